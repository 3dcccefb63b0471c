import { describe, expect, it } from 'vitest';
import { EntryGuard, normaliseMemberPath, parseFflags } from '../../src/core/imaging/entries.js';
import type { TarEntry, TarHeader, TarType } from '../../src/core/imaging/tar.js';
import { FileFlags, type FsMeta, type Ufs2Writer } from '../../src/core/ufs2/types.js';

/** A writer that records the calls the guard makes. */
function recorder() {
  const calls: string[] = [];
  const writer: Ufs2Writer = {
    directory: (p) => void calls.push(`dir ${p}`),
    symlink: (p, t) => void calls.push(`symlink ${p} -> ${t}`),
    hardlink: (p, t) => void calls.push(`link ${p} => ${t}`),
    file: async (p, _m: FsMeta, size, data) => {
      let n = 0;
      for await (const c of data) n += c.length;
      calls.push(`file ${p} ${size}/${n}`);
    },
    finish: async () => {
      throw new Error('unused');
    },
  };
  return { calls, writer };
}

function entry(name: string, type: TarType, extra: Partial<TarHeader> = {}, data = ''): TarEntry {
  const bytes = Buffer.from(data);
  return {
    header: { name, type, typeflag: '0', mode: 0o644, uid: 0, gid: 0, size: bytes.length, mtime: 1, mtimeNsec: 0, linkname: '', uname: 'root', gname: 'wheel', fflags: '', offset: 0, ...extra },
    data: (async function* () {
      if (bytes.length) yield bytes;
    })(),
  };
}

describe('member paths', () => {
  const where = () => 'test';
  it('normalises ./, //, trailing / and the root', () => {
    expect(normaliseMemberPath('./usr//bin/', where)).toBe('usr/bin');
    expect(normaliseMemberPath('./', where)).toBe('');
    expect(normaliseMemberPath('.', where)).toBe('');
  });
  it.each([
    ['../etc/passwd', /".." \(it would escape the root\)/],
    ['./usr/../../x', /"\.\."/],
    ['/etc/passwd', /absolute/],
    ['a\0b', /NUL/],
    [`x/${'y'.repeat(256)}`, /longer than 255 bytes/],
    [`${'abcdefgh/'.repeat(120)}z`, /longer than 1023 bytes/],
  ])('refuses %j', (name, why) => {
    expect(() => normaliseMemberPath(name, where)).toThrow(why);
  });
});

describe('file flags', () => {
  it('maps FreeBSD names to UFS bits', () => {
    expect(parseFflags('schg', 'x')).toBe(FileFlags.SF_IMMUTABLE);
    expect(parseFflags('schg,sunlnk,uappnd', 'x')).toBe(FileFlags.SF_IMMUTABLE | FileFlags.SF_NOUNLINK | FileFlags.UF_APPEND);
    expect(() => parseFflags('schg,bogus', 'base.txz: entry "x"')).toThrow(/base.txz: entry "x": unknown file flag "bogus"/);
  });
});

describe('EntryGuard', () => {
  it('passes a well-formed tree through and merges repeated directories', async () => {
    const { calls, writer } = recorder();
    const g = new EntryGuard(writer);
    await g.add(entry('./', 'directory'), 'base.txz');
    await g.add(entry('./boot/', 'directory'), 'base.txz');
    await g.add(entry('./boot/loader', 'file', {}, 'abc'), 'base.txz');
    await g.add(entry('./boot/', 'directory'), 'kernel.txz');
    await g.add(entry('./rescue/sh', 'file', {}, 'x'), 'base.txz'); // parent omitted by tar: allowed
    await g.add(entry('./rescue/ls', 'hardlink', { linkname: './rescue/sh' }), 'base.txz');
    await g.add(entry('./sys', 'symlink', { linkname: 'usr/src/sys' }), 'base.txz');
    expect(calls).toEqual(['dir ', 'dir boot', 'file boot/loader 3/3', 'dir boot', 'file rescue/sh 1/1', 'link rescue/ls => rescue/sh', 'symlink sys -> usr/src/sys']);
  });

  it.each([
    ['a path through a symlink', [entry('./escape', 'symlink', { linkname: '/tmp' }), entry('./escape/evil', 'file', {}, 'x')], /goes through the symlink "escape"/],
    ['a hard link to a missing entry', [entry('./a', 'hardlink', { linkname: './nothere' })], /points to a missing entry/],
    ['a hard link outside', [entry('./a', 'hardlink', { linkname: '../../etc/shadow' })], /points outside the root/],
    ['a hard link to a directory', [entry('./d/', 'directory'), entry('./a', 'hardlink', { linkname: './d' })], /points to a directory/],
    ['a device node', [entry('./dev/mem', 'chardev')], /device nodes and FIFOs are refused/],
    ['a FIFO', [entry('./fifo', 'fifo')], /device nodes and FIFOs are refused/],
    ['a duplicate file', [entry('./a', 'file', {}, 'x'), entry('./a', 'file', {}, 'y')], /duplicate path/],
    ['a file under a file', [entry('./a', 'file', {}, 'x'), entry('./a/b', 'file', {}, 'y')], /"a" is a file, not a directory/],
    ['a directory over a file', [entry('./a', 'file', {}, 'x'), entry('./a/', 'directory')], /a directory replaces an existing file/],
    ['an empty symlink target', [entry('./l', 'symlink', { linkname: '' })], /empty or invalid target/],
  ])('refuses %s, naming the set and the entry', async (_what, entries, why) => {
    const g = new EntryGuard(recorder().writer);
    const run = async () => {
      for (const e of entries) await g.add(e, 'base.txz');
    };
    await expect(run()).rejects.toThrow(why);
    await expect(
      (async () => {
        const g2 = new EntryGuard(recorder().writer);
        for (const e of entries) await g2.add({ header: { ...e.header }, data: (async function* () {})() }, 'base.txz');
      })(),
    ).rejects.toThrow(/^base\.txz: entry "/);
  });

  it('skips set files the customisation replaces, and links to them once it is written', async () => {
    const { calls, writer } = recorder();
    const g = new EntryGuard(writer, { replaced: new Set(['etc/rc.conf']) });
    await g.add(entry('./etc/', 'directory'), 'base.txz');
    await g.add(entry('./etc/rc.conf', 'file', {}, 'from the set'), 'base.txz');
    await g.add(entry('./etc/rc.conf.link', 'hardlink', { linkname: './etc/rc.conf' }), 'base.txz');
    await g.overlayFile('etc/rc.conf', { mode: 0o644, uid: 0, gid: 0, mtime: 0, flags: 0 }, Buffer.from('fbxen'));
    g.finishDeferredLinks();
    expect(calls).toEqual(['dir etc', 'file etc/rc.conf 5/5', 'link etc/rc.conf.link => etc/rc.conf']);
  });
});

describe('two sets fed at once (base on lane 0, kernel on lane 1)', () => {
  it('gives a directory both sets carry the kernel set\'s metadata, whichever arrives first', async () => {
    for (const kernelFirst of [false, true]) {
      const { calls, writer } = recorder();
      const seen: string[] = [];
      writer.directory = (p, m, lane) => void seen.push(`${p} ${m.mode.toString(8)} lane ${lane}`);
      const guard = new EntryGuard(writer);
      const fromBase = () => guard.add(entry('./boot/', 'directory', { mode: 0o755 }), 'base.txz', 0);
      const fromKernel = () => guard.add(entry('./boot/', 'directory', { mode: 0o700 }), 'kernel.txz', 1);
      if (kernelFirst) {
        await fromKernel();
        await fromBase();
      } else {
        await fromBase();
        await fromKernel();
      }
      expect(seen.at(-1), `kernel first: ${kernelFirst}`).toBe('boot 700 lane 1');
      expect(calls).toEqual([]);
    }
  });

  it('refuses a hard link to the other set\'s file, and passes each set\'s lane to the writer', async () => {
    const { calls, writer } = recorder();
    const lanes: string[] = [];
    const file = writer.file;
    writer.file = (p, m, size, data, lane) => (lanes.push(`${p} ${lane}`), file(p, m, size, data, lane));
    const guard = new EntryGuard(writer);
    await guard.add(entry('./boot/kernel/kernel', 'file', {}, 'ELF'), 'kernel.txz', 1);
    await guard.add(entry('./bin/sh', 'file', {}, 'sh'), 'base.txz', 0);
    await guard.add(entry('./bin/rsh', 'hardlink', { linkname: './bin/sh' }), 'base.txz', 0);
    await expect(guard.add(entry('./bin/k', 'hardlink', { linkname: './boot/kernel/kernel' }), 'base.txz', 0)).rejects.toThrow(/hard link points to a file of another set/);
    expect(lanes).toEqual(['boot/kernel/kernel 1', 'bin/sh 0']);
    expect(calls).toContain('link bin/rsh => bin/sh');
  });
});

describe('names and entry types the guard refuses by name', () => {
  it("refuses GNU's old sparse headers (type 'S') naming the format, rather than writing something else", async () => {
    const { writer } = recorder();
    await expect(new EntryGuard(writer).add(entry('./big', 'other', { typeflag: 'S' }), 'base.txz')).rejects.toThrow(/base\.txz: entry "\.\/big": a GNU old-format sparse file \(type 'S'\) is not supported/);
  });

  it('counts a name in bytes and shows bytes that are not UTF-8 as \\xNN', async () => {
    const { writer } = recorder();
    // 128 x "é" as UTF-8: 256 bytes, one over MAXNAMLEN (names reach the guard as byte strings).
    const long = Buffer.from('é'.repeat(128)).toString('latin1');
    await expect(new EntryGuard(writer).add(entry(`./${long}`, 'file'), 'base.txz')).rejects.toThrow(/longer than 255 bytes/);
    const bad = Buffer.from([0x2e, 0x2f, 0x61, 0xff, 0x2f, 0x2e, 0x2e]).toString('latin1'); // ./a\xff/..
    await expect(new EntryGuard(writer).add(entry(bad, 'file'), 'base.txz')).rejects.toThrow('base.txz: entry "./a\\xff/..": the name contains ".."');
  });
});
