/** The in-memory tree of entries: finding a path's parent (making missing directories), adding, looking up. */
import { InputError } from '../errors.js';
import { splitPath } from './input.js';
import { newDirNode, type DirNode, type Node, type WriterState } from './state.js';

/** The parent directory of `parts`, creating missing ones like tar does (0755 root:wheel, build time). */
export function parentOf(s: WriterState, path: string, parts: string[]): DirNode {
  let dir = s.root;
  for (let i = 0; i < parts.length - 1; i++) {
    const name = parts[i]!;
    const child = dir.children.get(name);
    if (child === undefined) {
      const made = newDirNode(dir);
      dir.children.set(name, made);
      s.entries++;
      dir = made;
    } else if (child.kind !== 'dir') {
      throw new InputError(`${JSON.stringify(path)} is under ${JSON.stringify(parts.slice(0, i + 1).join('/'))}, which is not a directory`, {
        hint: 'the distribution set is inconsistent; check the archive',
      });
    } else dir = child;
  }
  return dir;
}

/** Adds a file, symlink or hard link at a path that must not exist yet. */
export function addNew(s: WriterState, path: string, node: Node): void {
  const parts = splitPath(path, s.names);
  if (parts.length === 0) throw new InputError('the root directory cannot be a file, symlink or hard link');
  const dir = parentOf(s, path, parts);
  const name = parts[parts.length - 1]!;
  if (dir.children.has(name))
    throw new InputError(`duplicate path ${JSON.stringify(path)}`, { hint: 'each non-directory path may appear once in the input' });
  dir.children.set(name, node);
  s.entries++;
}

/** Adds a directory, or gives an existing one (made for a child that came first) its metadata. */
export function addDirectory(s: WriterState, path: string, meta: DirNode['meta']): void {
  const parts = splitPath(path, s.names);
  if (parts.length === 0) {
    s.root.meta = { ...meta };
    return;
  }
  const dir = parentOf(s, path, parts);
  const name = parts[parts.length - 1]!;
  const existing = dir.children.get(name);
  if (existing) {
    if (existing.kind !== 'dir')
      throw new InputError(`${JSON.stringify(path)} is both a directory and a ${existing.kind}`, {
        hint: 'the distribution set is inconsistent; check the archive',
      });
    existing.meta = { ...meta };
    return;
  }
  dir.children.set(name, newDirNode(dir, { ...meta }));
  s.entries++;
}

export function lookup(s: WriterState, path: string): Node | undefined {
  let node: Node = s.root;
  for (const part of splitPath(path, s.names)) {
    if (node.kind !== 'dir') return undefined;
    const next: Node | undefined = node.children.get(part);
    if (next === undefined) return undefined;
    node = next;
  }
  return node;
}
