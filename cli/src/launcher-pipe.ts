/**
 * The gateway's side of bin/agw.js: when the launcher starts agw as its child (another Node than
 * 24, or an installed package), it hands over one end of a pipe as AGW_LAUNCHER_FD and keeps the
 * other. Signals it receives it passes on, but a SIGKILL it cannot: then the kernel closes its end,
 * and the gateway takes that as the SIGTERM it would have passed on (drain, then exit), instead of
 * running on with no parent to stop it.
 */
import net from "node:net";

export function watchLauncher(): void {
  const fd = Number(process.env.AGW_LAUNCHER_FD);
  // Not for what agw starts in turn.
  delete process.env.AGW_LAUNCHER_FD;
  if (!Number.isInteger(fd) || fd < 3) return;
  let pipe: net.Socket;
  try {
    pipe = new net.Socket({ fd, readable: true, writable: false });
  } catch {
    return;
  }
  pipe.on("error", () => undefined);
  pipe.once("close", () => process.kill(process.pid, "SIGTERM"));
  pipe.resume();
  // The pipe must not keep a finished command (validate, --version) alive.
  pipe.unref();
}
