export * from "./admin-http.ts";
export * from "./async-queue.ts";
export * from "./config/loader.ts";
export * from "./config/schema.ts";
export * from "./config/semantic.ts";
export * from "./ir.ts";
export * from "./log.ts";
export * from "./xds/types.ts";
