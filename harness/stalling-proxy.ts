/**
 * A TCP proxy on 127.0.0.1 in front of another address, that can stall: while stalled it forwards
 * nothing in either direction and new connections wait (nothing is closed, nothing is lost), as a
 * network partition looks to both ends until their timeouts. `resume()` forwards again, including
 * what was held. For fault-injection tests: a server whose database connections go through it can
 * be cut off from the database while everything else still reaches it.
 */
import net from "node:net";

export interface StallingProxy {
  /** 127.0.0.1:<port> */
  port: number;
  stall(): void;
  resume(): void;
  /** Connections made through it so far. */
  connections(): number;
  close(): Promise<void>;
}

export async function startStallingProxy(targetHost: string, targetPort: number): Promise<StallingProxy> {
  let stalled = false;
  let made = 0;
  const sockets = new Set<net.Socket>();
  const waiting: Array<() => void> = [];
  /** Writes what was held while stalled, per direction. */
  const flushers = new Set<() => void>();
  const track = (s: net.Socket) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
    s.on("error", () => s.destroy());
  };
  // Not pipe(): a pipe may resume a paused source on its own; this holds every byte while stalled.
  const forward = (from: net.Socket, to: net.Socket) => {
    const held: Buffer[] = [];
    from.on("data", (chunk: Buffer) => {
      if (stalled) held.push(chunk);
      else to.write(chunk);
    });
    const flush = () => {
      for (const c of held.splice(0)) to.write(c);
    };
    flushers.add(flush);
    from.on("close", () => {
      flushers.delete(flush);
      to.destroy();
    });
  };
  const server = net.createServer((client) => {
    made++;
    track(client);
    const early: Buffer[] = [];
    const hold = (chunk: Buffer) => early.push(chunk);
    client.on("data", hold);
    const connect = () => {
      const upstream = net.connect(targetPort, targetHost);
      track(upstream);
      client.off("data", hold);
      forward(client, upstream);
      forward(upstream, client);
      for (const c of early.splice(0)) upstream.write(c);
    };
    if (stalled) waiting.push(connect);
    else connect();
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  return {
    port: (server.address() as net.AddressInfo).port,
    stall() {
      stalled = true;
    },
    resume() {
      stalled = false;
      for (const flush of flushers) flush();
      for (const connect of waiting.splice(0)) connect();
    },
    connections: () => made,
    close() {
      for (const s of sockets) s.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
