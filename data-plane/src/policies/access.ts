/**
 * The exchange's access phase before routing (engine/exchange.ts): the client address the listener
 * trusts (client-address.ts) becomes the exchange's, then the listener's IP rules (ip-rules.ts) judge
 * it. The same code for HTTP/1.1, h2c and h2: the exchange calls it once per request.
 */
import type { AgwErrorCode } from "../engine/errors.ts";
import { AGW_ERRORS } from "../engine/errors.ts";
import type { RequestHead } from "../engine/http1-parser.ts";
import type { ListenerRuntime } from "../runtime/types.ts";
import { resolveClientAddress } from "./client-address.ts";

export interface AccessRefusal {
  readonly status: number;
  readonly code: AgwErrorCode;
  readonly message: string;
}

const BAD_FORWARDED_FOR: AccessRefusal = {
  status: 400,
  code: AGW_ERRORS.AGW_ERR_INVALID_FORWARDED_FOR,
  message: "the X-Forwarded-For entry of the trusted proxy is not an IP address",
};

const LISTENER_DENIED: AccessRefusal = {
  status: 403,
  code: AGW_ERRORS.AGW_ERR_CLIENT_ADDRESS_DENIED,
  message: "the listener does not admit the client address",
};

/** Sets `x.clientIp` for this request; a refusal when the request must not go on. */
export function listenerAccess(
  x: { readonly peerIp: string; clientIp: string },
  head: RequestHead,
  listener: ListenerRuntime | undefined,
): AccessRefusal | null {
  const client = resolveClientAddress(listener?.clientAddress, x.peerIp, head);
  x.clientIp = client ?? x.peerIp;
  if (client === undefined) return BAD_FORWARDED_FOR;
  const rules = listener?.ipRules;
  if (rules !== undefined && !rules.permits(client)) return LISTENER_DENIED;
  return null;
}
