/**
 * xl on another dom0 (issue 15): what the xl driver needs of the transport (an SshSession gives it: one
 * OpenSSH connection per run), and the run's directory there. Files go into `<root>/<run>/` on the dom0
 * (sparse-aware copies), xl.cfg with them; the directory is removed when the run ends.
 */
import { basename, posix } from 'node:path';
import type { Runner } from '../../exec/runner.js';
import type { Staged, StageRequest } from '../types.js';

export interface XlRemote {
  /** ssh://user@host[:port], for messages and facts */
  readonly label: string;
  /** connects once; idempotent */
  open(): Promise<void>;
  /** a Runner whose commands run on the dom0 */
  runner(): Runner;
  mkdirRunDir(run: string): Promise<string>;
  removeRunDir(run: string): Promise<void>;
  put(localFile: string, remoteDir: string, opts?: { signal?: AbortSignal }): Promise<{ remotePath: string; bytesSent: number; size: number }>;
  close(): Promise<void>;
  /** a remote forward to this machine's loopback, or its cancel (the netfront round trip: net/remote-forward.ts) */
  forwardRemote?(bind: string, port: number, localPort: number, cancel?: boolean): Promise<{ port: number } | { error: string }>;
  /** the same steps as command lines, for --dry-run */
  readonly plan: {
    open(): string[];
    run(file: string, args: readonly string[], how?: { readsStdin?: boolean }): string;
    put(localFile: string, remoteDir: string): string;
    mkdirRunDir(run: string): string;
    removeRunDir(run: string): string;
    close(): string[];
  };
}

/** The run's directory on the dom0 and what went into it. */
export class RemoteRunDir {
  dir: string | undefined;

  constructor(
    private readonly remote: XlRemote,
    /** where run directories go on the dom0 (the session's remote root) */
    readonly root: string,
    readonly run: string,
  ) {}

  /** Where a local file lands in the run's directory (what plans and xl.cfg name). */
  pathOf(localFile: string): string {
    return posix.join(this.dir ?? posix.join(this.root, this.run), basename(localFile));
  }

  async stage(files: StageRequest, signal?: AbortSignal): Promise<Staged> {
    await this.remote.open();
    this.dir = await this.remote.mkdirRunDir(this.run);
    const put = async (f: string | undefined) => (f === undefined ? undefined : (await this.remote.put(f, this.dir!, signal ? { signal } : {})).remotePath);
    const image = (await put(files.image))!;
    const cd = await put(files.cd);
    const kernel = await put(files.kernel);
    const ramdisk = await put(files.ramdisk);
    return {
      image,
      ...(cd !== undefined ? { cd } : {}),
      ...(kernel !== undefined ? { kernel } : {}),
      ...(ramdisk !== undefined ? { ramdisk } : {}),
      dir: this.dir,
      keep: () => {
        this.dir = undefined;
      },
      remove: async () => {
        if (this.dir === undefined) return;
        this.dir = undefined;
        await this.remote.removeRunDir(this.run);
      },
    };
  }

  /** The run's directory on the dom0, made on first use (migrate-test's checkpoints go there). */
  async made(): Promise<string> {
    await this.remote.open();
    this.dir ??= await this.remote.mkdirRunDir(this.run);
    return this.dir;
  }

  /** A file of the run (xl.cfg) copied next to the staged ones; the directory is made when missing. */
  async put(localFile: string): Promise<string> {
    return (await this.remote.put(localFile, await this.made())).remotePath;
  }

  /** Removes the directory if this run made it and nothing removed it yet. */
  async cleanup(): Promise<void> {
    if (this.dir === undefined) return;
    this.dir = undefined;
    await this.remote.removeRunDir(this.run);
  }

  planStage(files: StageRequest): string[] {
    const dir = posix.join(this.root, this.run);
    return [
      this.remote.plan.mkdirRunDir(this.run),
      ...[files.image, files.cd, files.kernel, files.ramdisk].filter((f): f is string => f !== undefined).map((f) => `${this.remote.plan.put(f, dir)}   (sparse: only the data crosses)`),
    ];
  }

  planEnd(): string[] {
    return [this.remote.plan.removeRunDir(this.run), ...this.remote.plan.close()];
  }
}
