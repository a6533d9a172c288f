import net from "node:net";

/** A TCP port on 127.0.0.1 that is free right now (the OS picks it). Another process may take it
 * before it is used: whatever starts a server on it retries on a new one. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}
