/**
 * What the xl driver checks before it creates a domain: a dom0 that answers `xl info`, memory for the
 * guest (free, plus what autoballoon may take from dom0), the bridge, and the name free (fbxen never
 * reuses a domain it did not create).
 */
import { readFile, stat } from 'node:fs/promises';
import type { Runner } from '../../exec/runner.js';
import { join } from 'node:path';
import { EnvironmentError, ToolstackError } from '../../errors.js';
import type { HostFacts } from '../types.js';
import type { XlCommands } from './xl-commands.js';
import type { XlGuestSpec } from './xl-config.js';

/** Memory the hypervisor needs per guest beyond its RAM (page tables, QEMU's stub); a conservative margin. */
export const OVERHEAD_MIB = 64;
/** What fbxen assumes dom0 keeps when xl balloons it down for a guest. */
const DOM0_FLOOR_MIB = 1024;

/** The dom0's files the preflight reads: this machine's, or the remote dom0's through its Runner. */
export interface XlHostFiles {
  /** the file's text, or '' when it cannot be read */
  read(path: string): Promise<string>;
  isDir(path: string): Promise<boolean>;
}

export const localFiles: XlHostFiles = {
  read: (path) => readFile(path, 'utf8').catch(() => ''),
  isDir: (path) => stat(path).then((s) => s.isDirectory(), () => false),
};

/** The files of the dom0 that `runner` runs commands on (`cat`, `test -d`). */
export function remoteFiles(runner: Runner): XlHostFiles {
  return {
    read: async (path) => {
      const r = await runner.run('cat', ['--', path], { allowFailure: true, timeoutMs: 30_000 });
      return r.exitCode === 0 ? r.stdout : '';
    },
    isDir: async (path) => (await runner.run('test', ['-d', path], { allowFailure: true, timeoutMs: 30_000 })).exitCode === 0,
  };
}

export interface XlHostPaths {
  /** xl.conf, for autoballoon (default /etc/xen/xl.conf; FBXEN_XL_CONF) */
  xlConf: string;
  /** where bridges are looked up (default /sys/class/net; FBXEN_SYS_CLASS_NET for containers) */
  sysClassNet: string;
}

/**
 * xl.conf `autoballoon`: "on", "off", or "auto" (the default: on unless the Xen command line fixes
 * dom0_mem), per xl.conf(5).
 */
export async function autoballoonEnabled(xlConfPath: string, xenCommandline: string | undefined, files: XlHostFiles = localFiles): Promise<boolean> {
  const text = await files.read(xlConfPath);
  const m = /^\s*autoballoon\s*=\s*["']?(on|off|auto|1|0)["']?\s*(?:#.*)?$/m.exec(text);
  const mode = m?.[1] ?? 'auto';
  if (mode === 'on' || mode === '1') return true;
  if (mode === 'off' || mode === '0') return false;
  return !/(^|\s)dom0_mem=/.test(xenCommandline ?? '');
}

/** Throws what stops the guest from being created here; returns the host's facts, and a note for the user. */
export async function xlPreflight(xl: XlCommands, spec: XlGuestSpec, paths: XlHostPaths, info: (line: string) => void, files: XlHostFiles = localFiles): Promise<HostFacts> {
  const facts = await xl.info();
  const need = spec.memoryMiB + OVERHEAD_MIB;
  let balloon: boolean | null = null;
  if (facts.free_memory < need) {
    // xl can take memory back from dom0 (autoballoon) when dom0 was not given a fixed dom0_mem.
    balloon = await autoballoonEnabled(paths.xlConf, facts.xen_commandline, files);
    const dom0 = balloon ? (await xl.list().catch(() => [])).find((r) => r.domid === 0) : undefined;
    const fromDom0 = dom0 ? Math.max(0, dom0.memMiB - DOM0_FLOOR_MIB) : 0;
    if (facts.free_memory + fromDom0 < need) {
      throw new EnvironmentError(
        `the host has ${facts.free_memory} MiB free${fromDom0 ? ` (+${fromDom0} MiB xl could balloon out of dom0)` : ''}; the guest needs ${spec.memoryMiB} MiB (+${OVERHEAD_MIB} MiB overhead)`,
        { hint: 'lower --memory, stop other guests, or give dom0 less memory (dom0_mem= on the Xen command line)' },
      );
    }
    info(`free memory ${facts.free_memory} MiB: xl will balloon dom0 down to make room`);
  }
  const isBridge = await files.isDir(join(paths.sysClassNet, spec.bridge, 'bridge'));
  if (!isBridge) {
    throw new EnvironmentError(`bridge ${spec.bridge} does not exist on ${xl.host === 'localhost' && files === localFiles ? 'this host' : 'the dom0'}`, {
      hint: `create it (e.g. \`ip link add ${spec.bridge} type bridge\`), or name an existing one with --bridge (\`ip -br link show type bridge\` lists them)`,
    });
  }
  const existing = await xl.domid(spec.name);
  if (existing !== undefined) {
    throw new ToolstackError(`a domain named ${spec.name} already exists (domid ${existing}); fbxen only touches domains it created`, {
      hint: `choose another --name, or remove the old one yourself: xl destroy ${spec.name}`,
    });
  }
  return { host: xl.host === 'localhost' ? facts.host : xl.host, xenVersion: facts.xen_version, freeMemoryMiB: facts.free_memory, detail: { nr_cpus: facts.nr_cpus, total_memory: facts.total_memory, autoballoon: balloon } };
}
