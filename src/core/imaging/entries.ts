/**
 * Turns tar entries into file system operations, refusing anything that could not be extracted safely:
 * nothing is extracted to disk, but an image holding such an entry would be just as hostile to whoever
 * unpacks or boots it. Every refusal names the set and the entry.
 */
import { InputError } from '../errors.js';
import { FileFlags, type FsMeta, type Lane, type Ufs2Writer } from '../ufs2/types.js';
import { showName, type TarEntry, type TarHeader } from './tar.js';

const MAX_COMPONENT = 255; // MAXNAMLEN
const MAX_PATH = 1023; // PATH_MAX - 1

/** FreeBSD's fflags names (strtofflags in lib/libc/gen/strtofflags.c) for the flags UFS stores. */
const FLAG_NAMES: Record<string, number> = {
  arch: FileFlags.SF_ARCHIVED,
  archived: FileFlags.SF_ARCHIVED,
  nodump: FileFlags.UF_NODUMP,
  opaque: FileFlags.UF_OPAQUE,
  sappnd: FileFlags.SF_APPEND,
  sappend: FileFlags.SF_APPEND,
  schg: FileFlags.SF_IMMUTABLE,
  schange: FileFlags.SF_IMMUTABLE,
  simmutable: FileFlags.SF_IMMUTABLE,
  sunlnk: FileFlags.SF_NOUNLINK,
  sunlink: FileFlags.SF_NOUNLINK,
  uappnd: FileFlags.UF_APPEND,
  uappend: FileFlags.UF_APPEND,
  uchg: FileFlags.UF_IMMUTABLE,
  uchange: FileFlags.UF_IMMUTABLE,
  uimmutable: FileFlags.UF_IMMUTABLE,
  uunlnk: FileFlags.UF_NOUNLINK,
  uunlink: FileFlags.UF_NOUNLINK,
};

export function parseFflags(text: string, where: string): number {
  let bits = 0;
  for (const word of text.split(/[,\s]+/).filter(Boolean)) {
    const bit = FLAG_NAMES[word];
    if (bit === undefined) {
      throw new InputError(`${where}: unknown file flag "${word}"`, { hint: 'the set was not made by FreeBSD tar, or is damaged' });
    }
    bits |= bit;
  }
  return bits;
}

/**
 * Normalises a member name to the writer's form ('' is the root); refuses escaping or invalid names.
 * Names are byte strings (one character per byte, as the tar reader gives them): lengths are bytes.
 */
export function normaliseMemberPath(name: string, where: () => string): string {
  const refuse = (why: string, hint = 'the set is damaged or hostile; use an official FreeBSD release set'): never => {
    throw new InputError(`${where()}: ${why}`, { hint });
  };
  if (name.includes('\0')) refuse('the name contains a NUL byte');
  if (name.startsWith('/')) refuse('the name is absolute (it would be written outside the root)');
  const parts: string[] = [];
  for (const part of name.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') refuse('the name contains ".." (it would escape the root)');
    if (part.length > MAX_COMPONENT) refuse(`a name component is longer than ${MAX_COMPONENT} bytes`);
    parts.push(part);
  }
  const path = parts.join('/');
  if (path.length > MAX_PATH) refuse(`the path is longer than ${MAX_PATH} bytes`);
  return path;
}

type Kind = 'directory' | 'file' | 'symlink';

export interface EntryGuardOptions {
  /** Paths the customisation writes itself: the set's own entries at these paths are skipped. */
  replaced?: ReadonlySet<string>;
}

/**
 * Feeds entries to the writer after checking them. One guard spans all sets of a build, so a path in
 * kernel.txz through a symlink from base.txz is caught too.
 *
 * The sets may be fed at once, each on its own writer lane (base on 0, kernel on 1), so what the guard
 * decides must not depend on how their entries interleave: a directory both sets carry takes the
 * metadata of the set on the higher lane (the kernel's, as when the kernel came second), and a hard
 * link must name an earlier file of its own set. Anything else two sets can disagree on (a path in
 * both, a path through the other set's symlink) is refused whichever comes first.
 */
export class EntryGuard {
  private readonly kinds = new Map<string, Kind>();
  /** The lane whose set gave an explicit directory its metadata, or a file its data. */
  private readonly owner = new Map<string, Lane>();
  private readonly deferredLinks: { path: string; target: string }[] = [];
  entries = 0;
  fileBytes = 0;

  constructor(
    private readonly writer: Ufs2Writer,
    private readonly options: EntryGuardOptions = {},
  ) {
    this.kinds.set('', 'directory');
  }

  kindOf(path: string): Kind | undefined {
    return this.kinds.get(path);
  }

  private checkParents(path: string, where: () => string): void {
    let i = path.indexOf('/');
    while (i >= 0) {
      const prefix = path.slice(0, i);
      const kind = this.kinds.get(prefix);
      if (kind === 'symlink') {
        throw new InputError(`${where()}: the path goes through the symlink ${showName(prefix)}`, {
          hint: 'writing through a symlink could place the file anywhere; the set is damaged or hostile',
        });
      }
      if (kind === 'file') throw new InputError(`${where()}: ${showName(prefix)} is a file, not a directory`, { hint: 'the set is damaged' });
      if (kind === undefined) this.kinds.set(prefix, 'directory'); // tar may omit parents; the writer makes them
      i = path.indexOf('/', i + 1);
    }
  }

  async add(entry: TarEntry, label: string, lane: Lane = 0): Promise<void> {
    const h: TarHeader = entry.header;
    const where = () => `${label}: entry ${showName(h.name)}`;
    const path = normaliseMemberPath(h.name, where);
    this.checkParents(path, where);
    const meta: FsMeta = {
      mode: h.mode & 0o7777,
      uid: h.uid,
      gid: h.gid,
      mtime: h.mtime,
      mtimeNsec: h.mtimeNsec,
      flags: h.fflags ? parseFflags(h.fflags, where()) : 0,
    };
    const existing = this.kinds.get(path);
    if (this.options.replaced?.has(path) && h.type !== 'directory') {
      if (h.type === 'hardlink') this.deferredLinks.push({ path, target: this.linkTarget(h, where, lane) });
      this.kinds.set(path, 'file');
      return; // the customisation provides this file
    }
    switch (h.type) {
      case 'directory':
        if (existing && existing !== 'directory') throw new InputError(`${where()}: a directory replaces an existing ${existing}`, { hint: 'the sets overlap in a way FreeBSD sets never do' });
        this.kinds.set(path, 'directory');
        if ((this.owner.get(path) ?? -1) <= lane) {
          this.owner.set(path, lane);
          this.writer.directory(path, meta, lane);
        }
        break;
      case 'file':
        if (path === '') throw new InputError(`${where()}: a file cannot be the root`, { hint: 'the set is damaged' });
        this.refuseDuplicate(path, existing, where);
        this.kinds.set(path, 'file');
        this.owner.set(path, lane);
        this.entries++;
        this.fileBytes += h.size;
        await this.writer.file(path, meta, h.size, entry.data, lane);
        return;
      case 'symlink':
        if (h.linkname === '' || h.linkname.includes('\0')) throw new InputError(`${where()}: the symlink has an empty or invalid target`, { hint: 'the set is damaged' });
        if (h.linkname.length > MAX_PATH) throw new InputError(`${where()}: the symlink target is longer than ${MAX_PATH} bytes`, { hint: 'the set is damaged or hostile' });
        this.refuseDuplicate(path, existing, where);
        this.kinds.set(path, 'symlink');
        this.writer.symlink(path, h.linkname, meta, lane);
        break;
      case 'hardlink': {
        const target = this.linkTarget(h, where, lane);
        this.refuseDuplicate(path, existing, where);
        if (this.options.replaced?.has(target)) {
          this.deferredLinks.push({ path, target });
        } else {
          this.writer.hardlink(path, target, lane);
        }
        this.kinds.set(path, 'file');
        this.owner.set(path, lane);
        break;
      }
      case 'chardev':
      case 'blockdev':
      case 'fifo':
        throw new InputError(`${where()}: device nodes and FIFOs are refused (type ${h.type})`, {
          hint: 'FreeBSD release sets hold none: devfs makes /dev at boot; the set is not an official one',
        });
      default:
        if (h.typeflag === 'S') {
          throw new InputError(`${where()}: a GNU old-format sparse file (type 'S') is not supported`, { hint: "re-create the archive with GNU tar's --format=posix (pax sparse formats 0.0, 0.1 and 1.0 are read)" });
        }
        throw new InputError(`${where()}: unsupported tar entry type '${h.typeflag}'`, { hint: 'the set is damaged or was not made by FreeBSD tar' });
    }
    this.entries++;
  }

  private linkTarget(h: TarHeader, where: () => string, lane: Lane): string {
    if (h.linkname.startsWith('/') || h.linkname.split('/').includes('..')) {
      throw new InputError(`${where()}: the hard link points outside the root (${showName(h.linkname)})`, { hint: 'the set is damaged or hostile' });
    }
    const target = normaliseMemberPath(h.linkname, where);
    const kind = this.kinds.get(target);
    if (kind !== 'file') {
      throw new InputError(
        `${where()}: the hard link points to ${kind ? `a ${kind}` : 'a missing entry'} (${showName(h.linkname)})`,
        { hint: 'a hard link must name a regular file that comes earlier in the set' },
      );
    }
    if (this.owner.has(target) && this.owner.get(target) !== lane) {
      throw new InputError(`${where()}: the hard link points to a file of another set (${showName(h.linkname)})`, {
        hint: 'each FreeBSD set links only within itself; the set is damaged or not an official one',
      });
    }
    return target;
  }

  private refuseDuplicate(path: string, existing: Kind | undefined, where: () => string): void {
    if (existing) throw new InputError(`${where()}: duplicate path (already a ${existing})`, { hint: 'the sets overlap; each path may appear once' });
  }

  /** Writes a file of the customisation (templates, overlay): parents must already be directories. */
  async overlayFile(path: string, meta: FsMeta, content: Uint8Array): Promise<void> {
    const where = () => `customisation: ${JSON.stringify(path)}`;
    this.checkParents(path, where);
    const existing = this.kinds.get(path);
    if (existing && existing !== 'file') throw new InputError(`${where()}: replaces a ${existing} of the set`, { hint: 'choose another path in the overlay' });
    if (existing === 'file' && !this.options.replaced?.has(path)) throw new InputError(`${where()}: written twice`, { hint: 'the overlay and the templates name the same file' });
    this.kinds.set(path, 'file');
    await this.writer.file(path, meta, content.length, (async function* () {
      if (content.length) yield content;
    })());
  }

  overlayDirectory(path: string, meta: FsMeta): void {
    const where = () => `customisation: ${JSON.stringify(path)}`;
    this.checkParents(path, where);
    const existing = this.kinds.get(path);
    if (existing && existing !== 'directory') throw new InputError(`${where()}: replaces a ${existing} of the set`, { hint: 'choose another path in the overlay' });
    if (!existing) {
      this.kinds.set(path, 'directory');
      this.writer.directory(path, meta);
    }
  }

  /** Hard links whose target the customisation replaced: made once the replacement is written. */
  finishDeferredLinks(): void {
    for (const { path, target } of this.deferredLinks) this.writer.hardlink(path, target);
  }
}
