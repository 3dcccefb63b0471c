/**
 * The stand-in guest's soak (docs/lab.md, "The stand-in guest"): how often its OWN Linux kernel dies under
 * the lab's emulation, with no fbxen command involved. It boots only the stand-in (test/lab/standin-guest.ts),
 * N times per kernel command line, by plain `xl create -c` in the lab's dom0 of an xl.cfg like the one fbxen
 * renders for it (fixtures/golden/xl/standin-pvh.cfg: kernel, ramdisk, a blank xvda, fbxen's CD as the
 * read-only xvdb, no vif), watches its console until the stand-in's rc.d/fbxen is done and HOLD seconds of
 * its heartbeat after it (or a kernel panic, or the domain gone), then destroys it. Per boot: the outcome,
 * the times, and a crash's full console text and `xl dmesg` tail. The command lines run side by side (one
 * guest of each at a time), so a candidate and the baseline share the machine's load.
 *
 * A measuring tool, not part of the suite: FBXEN_LAB_TESTS=1 and FBXEN_STANDIN_SOAK=N (boots per
 * configuration). FBXEN_STANDIN_SOAK_CMDLINES: configurations separated by `;`, each a kernel command line
 * optionally followed by `@@`-separated xl.cfg lines that replace the golden's (`...@@tsc_mode = "native"`);
 * default STANDIN_CMDLINE, the adopted one. FBXEN_STANDIN_SOAK_HOLD: seconds watched after rc.d/fbxen is done
 * (default 20). FBXEN_STANDIN_SOAK_OUT: the report file (default in the run's TMPDIR). It fails when a boot
 * of any configuration did not come up whole.
 */
import { spawn } from 'node:child_process';
import { appendFileSync, openSync, closeSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createExecaRunner } from '../../src/core/exec/runner.js';
import { defaultCollectorPath, makeFbxenCd } from '../../src/core/iso/fbxen-cd.js';
import { labPaths } from '../../src/core/lab/paths.js';
import { CLI, ensureBuilt } from '../support/cli.js';
import { REPO } from '../support/verify/collector-harness.js';
import { tmpDir } from '../support/samples.js';
import { enabled, ensureLab, labDir, labDown, labSh } from './real-xl-support.js';
import { buildStandinGuest, STANDIN_CMDLINE } from './standin-guest.js';

const boots = Number(process.env.FBXEN_STANDIN_SOAK ?? '0');
const on = enabled && Number.isInteger(boots) && boots > 0;
const cmdlines = (process.env.FBXEN_STANDIN_SOAK_CMDLINES ?? STANDIN_CMDLINE).split(';').map((s) => s.trim()).filter((s) => s !== '');
const hold = Number(process.env.FBXEN_STANDIN_SOAK_HOLD ?? '20');
const DIR = '/var/lib/fbxen/soak';
const FIXTURE = 'fixtures/probes/migration-14.1-ok-derived';
let startedHere = false;
let work = '';
let out = '';

/** Copies a local file into the dom0 (the lab's own pinned ssh, the file on its stdin). */
async function labPut(local: string, remote: string): Promise<void> {
  ensureBuilt();
  const fd = openSync(local, 'r');
  try {
    const child = spawn(process.execPath, [CLI, 'lab', 'ssh', '--dir', labDir, '--', `cat > ${remote}.part && mv ${remote}.part ${remote}`], { stdio: [fd, 'ignore', 'pipe'] });
    let err = '';
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    const code = await new Promise<number | null>((r) => child.on('close', r));
    if (code !== 0) throw new Error(`copying ${local} to the lab's ${remote} failed (exit ${code}): ${err}`);
  } finally {
    closeSync(fd);
  }
}

/**
 * One boot in the dom0: `xl create -c` with the console into LOG, polled every second for LIMIT s. Prints
 * `RESULT outcome create_s done_s` (done_s: from create to rc.d/fbxen done, or -), the stand-in's own
 * uptime lines, and on anything but `ok` the console without frame data lines and xl dmesg's tail.
 */
const BOOT_SH = String.raw`#!/bin/sh
name=$1 cfg=$2 log=$3 limit=$4 hold=$5
xl destroy "$name" >/dev/null 2>&1
rm -f "$log"
t0=$(date +%s%N)
xl create -c "$cfg" >"$log" 2>&1 </dev/null &
cpid=$!
outcome=timeout created=- done=- domid=x
i=0
while [ "$i" -lt "$limit" ]; do
	sleep 1
	i=$((i + 1))
	st=$(xl list "$name" 2>/dev/null | awk 'NR==2{print $5}')
	if [ "$created" = - ] && [ -n "$st" ]; then created=$(( ($(date +%s%N) - t0) / 1000000 )); domid=$(xl domid "$name" 2>/dev/null); fi
	if grep -qE 'Kernel panic|Oops|BUG:|general protection|double fault' "$log"; then outcome=panic; sleep 3; break; fi
	case "$st" in *c*) outcome=crashed; break ;; esac
	if [ "$created" != - ] && [ -z "$st" ]; then
		# on_reboot="destroy": a triple fault (Xen's "HVM shutdown action 1") takes the domain away
		if xl dmesg | grep -q "d$domid"'v0 Triple fault'; then outcome=triple-fault; else outcome=gone; fi
		break
	fi
	if [ "$done" = - ] && grep -q 'rc.d/fbxen done' "$log"; then done=$(( ($(date +%s%N) - t0) / 1000000 )); fi
	if [ "$done" != - ] && [ $(( ($(date +%s%N) - t0) / 1000000 - done )) -ge $((hold * 1000)) ]; then
		if grep -q 'FBXEN1 END' "$log" && [ "$(grep -c 'FBXEN1 HB standin-hb' "$log")" -ge 5 ]; then outcome=ok; else outcome=incomplete; fi
		break
	fi
done
echo "RESULT $outcome created_ms=$created done_ms=$done state=$st domid=$domid"
grep -a 'STAND-IN GUEST' "$log"
if [ "$outcome" != ok ]; then
	echo "--- console (no frame data lines)"
	grep -av '^FBXEN1 D ' "$log" | tail -n 150
	echo "--- xl dmesg tail"
	xl dmesg | grep -v 'save: \|restore: ' | grep -A 14 "d$domid"'v' | tail -n 40
fi
xl destroy "$name" >/dev/null 2>&1
kill "$cpid" 2>/dev/null
wait "$cpid" 2>/dev/null
exit 0
`;

/** A soak configuration: `CMDLINE[@@KEY = VALUE[@@...]]`, the xl.cfg lines replacing the golden's (or added). */
function xlCfg(name: string, config: string): string {
  const [cmdline = '', ...lines] = config.split('@@').map((s) => s.trim());
  const golden = readFileSync(join(REPO, 'fixtures/golden/xl/standin-pvh.cfg'), 'utf8');
  let cfg = golden
    .replace(/^name = .*$/m, `name = "${name}"`)
    .replace(/^uuid = .*\n/m, '')
    .replace(/\/var\/lib\/fbxen\/runs\/[^/"]+\//g, `${DIR}/`)
    .replace(/^cmdline = .*$/m, `cmdline = "${cmdline}"`)
    .replace(/target=\S*real\.raw/, `target=${DIR}/${name}.raw`);
  let extra = '';
  for (const line of lines) {
    const key = /^([a-z_]+)\s*=/.exec(line)?.[1];
    if (!key) throw new Error(`not an xl.cfg line: ${line}`);
    const re = new RegExp(`^${key} = .*$`, 'm');
    if (re.test(cfg)) cfg = cfg.replace(re, line);
    else extra += `${line}\n`;
  }
  cfg += extra;
  if (!cfg.includes(`cmdline = "${cmdline}"`) || !cfg.includes(`${DIR}/${name}.raw`) || !cfg.includes(`${DIR}/fbxen-cd.iso`)) throw new Error(`the golden stand-in xl.cfg changed shape:\n${cfg}`);
  return cfg;
}

beforeAll(async () => {
  if (!on) return;
  ({ startedHere } = await ensureLab());
  work = tmpDir('standin-soak');
  out = process.env.FBXEN_STANDIN_SOAK_OUT || join(work, 'soak.log');
  const paths = labPaths(labDir);
  const imageDir = paths.image((JSON.parse(readFileSync(paths.state, 'utf8')) as { imageKey: string }).imageKey).dir;
  buildStandinGuest({ imageDir, bundleDir: join(REPO, FIXTURE), out: work });
  await makeFbxenCd({ runId: 'soak', phase: 'boot', collectorPath: defaultCollectorPath(), outPath: join(work, 'fbxen-cd.iso'), timestamp: 1717300000 }, createExecaRunner());
  writeFileSync(join(work, 'boot.sh'), BOOT_SH);
  const made = await labSh(`rm -rf ${DIR} && mkdir -p ${DIR}`);
  if (made.code !== 0) throw new Error(made.stderr);
  await labPut(join(imageDir, 'vmlinuz'), `${DIR}/standin-kernel`);
  await labPut(join(work, 'standin-initrd.gz'), `${DIR}/standin-ramdisk`);
  await labPut(join(work, 'fbxen-cd.iso'), `${DIR}/fbxen-cd.iso`);
  await labPut(join(work, 'boot.sh'), `${DIR}/boot.sh`);
  for (const [k, c] of cmdlines.entries()) {
    writeFileSync(join(work, `soak${k}.cfg`), xlCfg(`soak${k}`, c));
    await labPut(join(work, `soak${k}.cfg`), `${DIR}/soak${k}.cfg`);
    const r = await labSh(`truncate -s 256M ${DIR}/soak${k}.raw`);
    if (r.code !== 0) throw new Error(r.stderr);
  }
}, 1_200_000);

afterAll(async () => {
  if (!on) return;
  await labSh(`for d in $(xl list | awk '/^soak[0-9]/{print $1}'); do xl destroy "$d"; done; rm -rf ${DIR}`);
  if (startedHere) labDown();
}, 300_000);

describe('the stand-in guest booted N times by plain xl create (a measuring tool: FBXEN_STANDIN_SOAK=N)', () => {
  it.skipIf(!on)(`boots the stand-in ${boots} times per kernel command line; every boot comes up whole (its rc.d/fbxen done, ${hold} s of heartbeat)`, async () => {
    const rows = cmdlines.map(() => [] as { outcome: string; createdMs: string; doneMs: string; uptimes: string }[]);
    const say = (s: string) => {
      appendFileSync(out, `${s}\n`);
      process.stderr.write(`${s}\n`);
    };
    say(`standin soak ${new Date().toISOString()}: ${boots} boots each of ${cmdlines.map((c, k) => `[${k}] "${c}"`).join(', ')}; hold ${hold} s`);
    for (let i = 1; i <= boots; i++) {
      const results = await Promise.all(cmdlines.map((_, k) => labSh(`sh ${DIR}/boot.sh soak${k} ${DIR}/soak${k}.cfg ${DIR}/soak${k}.log 420 ${hold}`)));
      for (const [k, r] of results.entries()) {
        const m = /^RESULT (\S+) created_ms=(\S+) done_ms=(\S+)/m.exec(r.stdout);
        const uptimes = [...r.stdout.matchAll(/uptime ([\d.]+) s/g)].map((u) => u[1]).join('/');
        const row = { outcome: m?.[1] ?? `no-result(exit ${r.code})`, createdMs: m?.[2] ?? '-', doneMs: m?.[3] ?? '-', uptimes };
        rows[k]!.push(row);
        say(`boot ${i} [${k}]: ${row.outcome} created ${row.createdMs} ms, rc.d/fbxen done ${row.doneMs} ms after create, guest uptime at banner/done ${uptimes || '-'} s`);
        if (row.outcome !== 'ok') say(`--- boot ${i} [${k}] "${cmdlines[k]}":\n${r.stdout}\n${r.stderr}`);
      }
    }
    for (const [k, c] of cmdlines.entries()) {
      const bad = rows[k]!.filter((r) => r.outcome !== 'ok');
      say(`[${k}] "${c}": ${rows[k]!.length - bad.length} of ${rows[k]!.length} ok${bad.length ? ` (${bad.map((b) => b.outcome).join(', ')})` : ''}; done after create ${rows[k]!.map((r) => r.doneMs).join(', ')} ms`);
    }
    if (existsSync(out)) process.stderr.write(`standin soak report: ${out}\n`);
    for (const [k, c] of cmdlines.entries()) expect(rows[k]!.map((r) => r.outcome), `"${c}"`).toEqual(rows[k]!.map(() => 'ok'));
  }, 24 * 3_600_000);
});
