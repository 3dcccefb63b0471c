/**
 * The serial consoles the xl driver holds: `xl create -c`'s client and `xl console -t serial DOMID`
 * clients, each piped into the sink a flow gave (console.log, migrate-test's capture). During a localhost
 * migration a second client follows NAME--incoming as soon as it appears, so the guest's first lines after
 * the resume are not lost to a console attached too late; the next attach reuses it.
 */
import type { Writable } from 'node:stream';
import type { ConsoleAttachment, DomainRef } from '../types.js';
import { parseXlList } from './parse.js';
import type { XlCommands, XlConsoleClient } from './xl-commands.js';

/** How long a console client may take to exit once its stdin is closed. */
const DETACH_BOUND_MS = 5000;

interface Held extends ConsoleAttachment {
  alive: boolean;
}

/** Wraps a console client as a ConsoleAttachment: its output into `sink` (never ending the sink). */
export function attachment(client: XlConsoleClient, domain: DomainRef, sink: Writable): Held {
  client.stdout.pipe(sink, { end: false });
  const done = client.done.then(
    () => undefined,
    () => undefined,
  );
  const held: Held = {
    domain,
    done,
    alive: true,
    write: (text) => client.write(text),
    detach: async () => {
      client.detach();
      const bound = () => new Promise((r) => setTimeout(r, DETACH_BOUND_MS).unref());
      if ((await Promise.race([done.then(() => true), bound()])) !== true && client.reap) {
        // Still there: the real xenconsole without a terminal does not read its stdin (docs/lab.md).
        await client.reap();
        await Promise.race([done, bound()]);
      }
      client.stdout.unpipe(sink);
    },
  };
  void done.then(() => (held.alive = false));
  return held;
}

export class XlConsoles {
  private current: Held | undefined;
  private incoming: Held | undefined;
  /** xenconsole's -t: an HVM domain's console is its QEMU serial port; PV and PVH have only the PV console */
  consoleType: 'serial' | 'pv' = 'serial';

  constructor(private readonly xl: XlCommands) {}

  /** The console of `domain` into `sink`: the one already attached to that domid, or a new client. */
  attach(domain: DomainRef, sink: Writable): ConsoleAttachment {
    if (this.incoming?.alive && this.incoming.domain.id === domain.id) {
      void this.current?.detach();
      this.current = this.incoming;
      this.incoming = undefined;
      return this.current;
    }
    if (this.current?.alive && this.current.domain.id === domain.id) return this.current;
    void this.current?.detach();
    this.current = attachment(this.xl.console(Number(domain.id), this.consoleType), domain, sink);
    return this.current;
  }

  /** The console a flow types into: the one attached last. */
  write(text: string): void {
    this.current?.write(text);
  }

  /** Attaches to NAME--incoming as soon as it appears, until the returned stop is called. */
  watchIncoming(name: string, sink: Writable, pollMs = 200): () => Promise<void> {
    let stopped = false;
    const watcher = (async () => {
      while (!stopped) {
        await new Promise((r) => setTimeout(r, pollMs));
        if (stopped) return;
        const r = await this.xl.run(['list'], { allowFailure: true, timeoutMs: 30_000 }).catch(() => undefined);
        if (!r || r.exitCode !== 0) continue;
        const inc = parseXlList(r.stdout).find((row) => row.name === `${name}--incoming`);
        if (inc) {
          this.incoming = attachment(this.xl.console(inc.domid, this.consoleType), { name, id: String(inc.domid), host: this.xl.host }, sink);
          return;
        }
      }
    })();
    return async () => {
      stopped = true;
      await watcher.catch(() => undefined);
    };
  }

  /** Detaches every client (EOF of its stdin, then the reap of a xenconsole still there) and waits for them, bounded. */
  async close(): Promise<void> {
    const all = [this.current, this.incoming].filter((c) => c !== undefined);
    this.current = undefined;
    this.incoming = undefined;
    await Promise.all(all.map((c) => c.detach()));
  }
}
