/** `npm run build -w ebpf-agent`: builds the BPF object and the addon now instead of on first use. */
import { ensureBuilt } from "../src/build.ts";

const outputs = await ensureBuilt();
console.log(`built ${outputs.bpfObject}\nbuilt ${outputs.addon}`);
