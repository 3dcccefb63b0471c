/**
 * The guest's serial console over TCP: fbxen listens, and QEMU on the pool host connects to it because
 * the VM has platform:hvm_serial = "tcp:<host>:<port>" (QEMU's -serial tcp: client mode). Every
 * connection's bytes are appended to one log file, so a console that reconnects (a new QEMU after a
 * migration, a restarted VM) keeps writing to the same log. migrate-test reopens a listener on the same
 * port (FBXEN_XAPI_CONSOLE_PORT) to keep reading a kept VM's console.
 */
import { createWriteStream } from 'node:fs';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { EnvironmentError } from '../../errors.js';

export interface ConsoleListener {
  /** The hvm_serial value: "tcp:<host>:<port>" (IPv6 hosts in brackets). */
  target: string;
  port: number;
  /** How many times QEMU connected. */
  connections(): number;
  close(): Promise<void>;
}

export interface ConsoleListenerOptions {
  logPath: string;
  /** The address the pool hosts reach this host on. */
  advertiseHost: string;
  listenHost?: string | undefined;
  port?: number | undefined;
  onConnection?: ((remote: string) => void) | undefined;
}

export async function openConsoleListener(o: ConsoleListenerOptions): Promise<ConsoleListener> {
  const file = createWriteStream(o.logPath, { flags: 'a' });
  let count = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((sock) => {
    count++;
    sockets.add(sock);
    o.onConnection?.(`${sock.remoteAddress}:${sock.remotePort}`);
    sock.on('data', (d) => file.write(d));
    sock.on('error', () => undefined);
    sock.on('close', () => sockets.delete(sock));
  });
  const listenHost = o.listenHost ?? '0.0.0.0';
  try {
    await new Promise<void>((ok, fail) => {
      server.once('error', fail);
      server.listen(o.port ?? 0, listenHost, ok);
    });
  } catch (err) {
    file.end();
    throw new EnvironmentError(`cannot listen for the guest console on ${listenHost}:${o.port ?? 0}: ${(err as Error).message}`, {
      hint: 'set FBXEN_XAPI_CONSOLE_PORT to a free port the pool hosts can reach',
    });
  }
  const port = (server.address() as AddressInfo).port;
  const host = o.advertiseHost.includes(':') && !o.advertiseHost.startsWith('[') ? `[${o.advertiseHost}]` : o.advertiseHost;
  return {
    target: `tcp:${host}:${port}`,
    port,
    connections: () => count,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
      await new Promise<void>((r) => file.end(r));
    },
  };
}
