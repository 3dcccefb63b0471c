/**
 * The Xen customisation written into the image in the same pass as the sets: templates/files.yaml
 * (loader.conf with the serial console, rc.conf, fstab by GPT label, the guest collector) and the
 * user's overlay directory.
 */
import { lstat, readdir, readFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { z } from 'zod';
import { parseYamlText } from '../config-file.js';
import { ConfigError, InputError } from '../errors.js';
import { normaliseMemberPath } from './entries.js';

export interface CustomFile {
  /** A byte string (one character per byte), as the tar reader's names: the UFS2 writer takes them so. */
  path: string;
  mode: number;
  content: Buffer;
  /** Where it came from, for build.json. */
  source: string;
}

export interface Customisation {
  files: CustomFile[];
  directories: { path: string; mode: number }[];
}

const FilesYaml = z.object({
  files: z.array(
    z
      .object({
        path: z.string().min(1),
        template: z.string().optional(),
        guest: z.string().optional(),
        mode: z.string().regex(/^0?[0-7]{3,4}$/),
      })
      .refine((f) => (f.template === undefined) !== (f.guest === undefined), 'give exactly one of template or guest'),
  ),
});

export function renderTemplate(text: string, vars: Record<string, string>, where: string): string {
  return text.replace(/\{\{\s*([a-z_]+)\s*\}\}/g, (_m, name: string) => {
    const v = vars[name];
    if (v === undefined) throw new ConfigError(`${where}: unknown template variable {{${name}}}`, [], { hint: `known: ${Object.keys(vars).join(', ')}` });
    return v;
  });
}

export async function loadCustomisation(opts: {
  templatesDir: string;
  guestDir: string;
  vars: Record<string, string>;
  overlay?: string | undefined;
}): Promise<Customisation> {
  const listPath = join(opts.templatesDir, 'files.yaml');
  const parsed = FilesYaml.safeParse(parseYamlText(await readFile(listPath, 'utf8'), listPath));
  if (!parsed.success) throw new ConfigError(`${listPath} is invalid`, parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`));
  const files: CustomFile[] = [];
  for (const f of parsed.data.files) {
    const src = f.template ? join(opts.templatesDir, f.template) : join(opts.guestDir, f.guest!);
    let content = await readFile(src).catch((err: NodeJS.ErrnoException) => {
      throw new ConfigError(`${listPath}: cannot read ${src} (${err.code})`, [], { hint: 'the fbxen installation is incomplete' });
    });
    if (f.template) content = Buffer.from(renderTemplate(content.toString('utf8'), opts.vars, src));
    files.push({ path: normaliseMemberPath(Buffer.from(f.path, 'utf8').toString('latin1'), () => listPath), mode: parseInt(f.mode, 8), content, source: relative(join(opts.templatesDir, '..'), src) });
  }
  const directories: { path: string; mode: number }[] = [];
  if (opts.overlay) await readOverlay(opts.overlay, files, directories);
  return { files, directories };
}

/** Walks the overlay in sorted order (host readdir order must not leak into the image). */
async function readOverlay(root: string, files: CustomFile[], directories: { path: string; mode: number }[]): Promise<void> {
  const st = await lstat(root).catch(() => undefined);
  if (!st?.isDirectory()) throw new InputError(`--overlay ${root} is not a directory`, { hint: 'give a directory whose tree is copied into the image' });
  // Host names are bytes too: read them as bytes, so a name that is not UTF-8 reaches the image unchanged.
  const walk = async (dir: Buffer, relDir: string): Promise<void> => {
    for (const name of (await readdir(dir, { encoding: 'buffer' })).sort(Buffer.compare)) {
      const fullBytes = Buffer.concat([dir, Buffer.from('/'), name]);
      const full = fullBytes.toString('utf8'); // for messages
      const rel = `${relDir}${name.toString('latin1')}`;
      const path = normaliseMemberPath(rel, () => `--overlay ${full}`);
      const s = await lstat(fullBytes);
      if (s.isDirectory()) {
        directories.push({ path, mode: s.mode & 0o7777 });
        await walk(fullBytes, `${rel}/`);
      } else if (s.isFile()) {
        const existing = files.findIndex((f) => f.path === path);
        const file = { path, mode: s.mode & 0o7777, content: await readFile(fullBytes), source: `overlay:${Buffer.from(rel, 'latin1').toString('utf8')}` };
        if (existing >= 0) files[existing] = file;
        else files.push(file);
      } else {
        throw new InputError(`--overlay: ${full} is not a regular file or directory`, { hint: 'the overlay may hold only files and directories' });
      }
    }
  };
  await walk(Buffer.from(root), '');
}
