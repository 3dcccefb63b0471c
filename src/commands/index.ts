/**
 * Every command fbxen has, with its options: commander only, so that `fbxen --help` and
 * `fbxen build --help` load nothing else. Each action imports its command's module (schema, core flow)
 * when the command runs. The defaults shown in the help text are copies of the core's values
 * (./defaults.ts); test/cli/docs.test.ts keeps them equal.
 */
import { Option, type Command } from 'commander';
import type { CommandContext } from './context.js';
import { DEFAULT_ARTIFACTS_ROOT, DEFAULT_MIRROR, FORMAT_NAMES, PROBE_IDS, XZ_DECODERS } from './defaults.js';

export type ContextFactory = () => Promise<CommandContext>;
export type CommandRegistrar = (program: Command, context: ContextFactory) => void;

const collect = (value: string, previous: string[] | undefined) => [...(previous ?? []), value];

function registerBuild(program: Command, context: ContextFactory): void {
  program
    .command('build')
    .description('build a FreeBSD GENERIC image for Xen from the release sets (no root, no staging tree)')
    .option('--release <name>', 'FreeBSD release to fetch, e.g. 14.3-RELEASE')
    .option('--release-name <name>', 'with --dist: the release of sets without bin/freebsd-version, e.g. 14.3-RELEASE')
    .addOption(new Option('--arch <arch>', 'architecture (default amd64)').choices(['amd64', 'i386']))
    .option('--mirror <url>', `FreeBSD mirror (default ${DEFAULT_MIRROR})`)
    .option('--dist <dir|url>', 'a directory or URL holding MANIFEST, base.txz and kernel.txz')
    .option('--name <name>', 'image name (default freebsd-<release>-<arch>)')
    .option('--out <dir>', 'output directory (default ./out)')
    .option('--format <list>', `output formats, comma-separated: ${FORMAT_NAMES.join(', ')} (default raw,qcow2)`)
    .option('--size <size>', 'root file system size (default: content plus headroom; growfs grows it at first boot)')
    .option('--disk-size <size>', 'disk size (default 6G, or what the content needs)')
    .option('--swap <size>', 'swap partition size, 0 for none (default 1G)')
    .option('--uefi', 'add an EFI system partition with /boot/loader.efi')
    .option('--hostname <name>', 'the guest host name (default: the image name)')
    .option('--overlay <dir>', 'a directory copied over the image (owner root:wheel, modes kept)')
    .option('--allow-non-xen-kernel', 'build even when the kernel lacks options XENHVM / device xenpci')
    .option('--no-cache', 'do not keep decompressed sets in the cache')
    .option('--cache-dir <dir>', 'cache directory (default $XDG_CACHE_HOME/fbxen or ~/.cache/fbxen)')
    .addOption(new Option('--xz-decoder <program>', 'what decompresses the sets: auto is 7zz when on PATH (faster), else xz').choices([...XZ_DECODERS]))
    .option('--check-reproducible', 'build twice and compare the outputs byte for byte')
    .option('--dry-run', 'print what would be fetched, run and written, and stop')
    .option('--vcpus <n>', 'vCPUs recorded in an XVA (default 2)')
    .option('--memory <MiB>', 'memory recorded in an XVA (default 1024)')
    .action(async (_opts, cmd: Command) => (await import('./build.js')).buildAction(await context(), cmd));
}

/** The shared flags of `boot` and `config xl`. */
function addGuestOptions(cmd: Command): Command {
  return cmd
    .option('--image <file>', 'the image: out/NAME.raw or out/NAME.qcow2 from `fbxen build`')
    .option('--name <name>', 'domain name (default fbxen-<image name>)')
    .option('--vcpus <n>', 'virtual CPUs (default 2)')
    .option('--memory <MiB>', 'memory in MiB, or with a unit: 2G (default 1024)')
    .option('--bridge <bridge>', 'bridge for the xn0 vif (default xenbr0)')
    .option('--iso <file>', 'put this ISO in the CD drive instead of the fbxen CD')
    .option('--empty-cdrom', 'leave the CD drive empty (the image must carry the collector)')
    .option('--artifacts <dir>', `root of the run directories (default ./${DEFAULT_ARTIFACTS_ROOT})`)
    .option('--run-id <id>', 'the run id (default: time and a random suffix)')
    .addOption(new Option('--type <type>', 'hvm, or pvh: Xen enters the kernel directly, no firmware or device model (default hvm)').choices(['hvm', 'pvh']))
    .option('--kernel <file>', 'pvh: boot this FreeBSD kernel (e.g. from make buildkernel) with the image\'s userland (default: the kernel build kept beside the image)')
    .option('--kernel-env <KEY=VALUE>', 'pvh: a kernel environment entry on the kernel command line (repeatable)', collect);
}

function registerBoot(program: Command, context: ContextFactory): void {
  const cmd = program.command('boot').description('boot an image under Xen (xl or XenServer), capture its console and collect the evidence');
  addGuestOptions(cmd)
    .addOption(new Option('--toolstack <name>', 'xl on a dom0, or xapi for XenServer/XCP-ng (default xl)').choices(['xl', 'xapi']))
    .option('--keep', 'leave the domain running afterwards')
    .option('--timeout <sec>', 'seconds to wait for the collector (default 600)')
    .option('--grace <sec>', 'seconds a clean shutdown may take before destroy (default 60)')
    .option('--host <url>', 'xl only: the dom0, ssh://root@HOST[:PORT] or lab (the running `fbxen lab`; default: this machine); image and CD are copied there')
    .option('--known-hosts <file>', 'with --host: the known_hosts file that pins the dom0 host key (strict checking)')
    .option('--identity <file>', 'with --host: the ssh private key to log in with')
    .option('--verify', 'verify the collected evidence and write report.json and report.junit.xml')
    .option('--dry-run', 'print the config and the exact plan, create nothing')
    .option('--network <name-or-uuid>', 'xapi only: the network for the VIF')
    .option('--sr <name-or-uuid>', 'xapi only: the storage repository')
    .option('--ca-file <file>', 'xapi only: CA certificate for the XAPI TLS connection')
    .option('--insecure', 'xapi only: do not verify the XAPI TLS certificate')
    .option('--insecure-http', 'xapi only: accept an http:// FBXEN_XAPI_URL (the password travels in clear)')
    .action(async (_opts, command: Command) => (await import('./boot.js')).bootAction(await context(), command));
}

function registerConfig(program: Command, context: ContextFactory): void {
  const config = program.command('config').description('print generated toolstack configuration without booting');
  addGuestOptions(config.command('xl').description('print the xl.cfg for an image (what `fbxen boot --toolstack xl` writes)')).action(async (_opts, command: Command) =>
    (await import('./config.js')).configXlAction(await context(), command),
  );
}

function registerVerify(program: Command, context: ContextFactory): void {
  program
    .command('verify')
    .description('verify Xen PVHVM support from the evidence a FreeBSD guest collected (fbxen-bundle/1)')
    .option('--bundle <dir|tar>', 'a bundle directory, .tar or .tar.gz written by fbxen-collect')
    .option('--console-log <file>', 'a serial console log holding the framed bundle')
    .option('--ssh <user@host>', 'run the collector in the guest over ssh (streamed to sh -s)')
    .option('--domain <name>', 'the latest `fbxen boot` run of this domain (its console.log)')
    .option('--identity <file>', 'ssh private key for --ssh')
    .option('--port <n>', 'ssh port for --ssh')
    .addOption(new Option('--host-key-checking <mode>', 'ssh host key checking (default strict)').choices(['strict', 'accept-new', 'off']))
    .addOption(new Option('--toolstack <name>', 'with --domain: the toolstack the run used').choices(['xl', 'xapi']))
    .option('--artifacts <dir>', `root of the fbxen boot run directories (default ./${DEFAULT_ARTIFACTS_ROOT})`)
    .option('--run <id>', 'the run id to look for (console log), expect (bundle) or give the collector (ssh)')
    .option('--phase <phase>', 'the phase to look for (console log) or to give the collector (ssh)')
    .option('--before <dir|tar>', 'a bundle taken before a migration (enables the migration probe)')
    .option('--before-phase <phase>', 'with --console-log: the frame of this phase is the before bundle')
    .option('--probe <id>', `run only this probe (repeatable): ${PROBE_IDS.join(', ')}`, collect)
    .option('--junit <file>', 'also write a JUnit XML report')
    .option('--dry-run', 'print what would be read and run, do nothing')
    .action(async (_opts, command: Command) => (await import('./verify.js')).verifyAction(await context(), command));
}

function registerMigrateTest(program: Command, context: ContextFactory): void {
  program
    .command('migrate-test')
    .description('migrate a running FreeBSD guest N times (live or save/restore), measure downtime, verify timers, IPIs, disk and CD after each')
    .addOption(new Option('--toolstack <name>', 'xl (default) or xapi').choices(['xl', 'xapi']))
    .option('--domain <name>', 'the running domain / VM (booted with fbxen boot --keep)')
    .option('--to <host>', 'xl: localhost (default) or a host reachable as root over ssh; xapi: a pool host (default another)')
    .option('--iterations <n>', 'migrations in a row (default 10, like OSSTest guest-localmigrate/x10)')
    .addOption(new Option('--mode <mode>', 'live migration or save + restore (default live)').choices(['live', 'save-restore']))
    .addOption(new Option('--load <kind>', 'load in the guest during each migration (default none)').choices(['none', 'disk', 'cpu', 'all']))
    .option('--keep-going', 'go on after a failed iteration (while the domain still runs)')
    .addOption(new Option('--evidence <channel>', 'how to run the heartbeat and collector in the guest (default console, ssh with --ssh)').choices(['console', 'ssh']))
    .option('--ssh <user@host>', 'the guest over ssh')
    .option('--identity <file>', 'ssh private key for --ssh')
    .option('--port <n>', 'ssh port for --ssh')
    .addOption(new Option('--host-key-checking <mode>', 'ssh host key checking (default strict)').choices(['strict', 'accept-new', 'off']))
    .option('--step-timeout <sec>', 'seconds each migration, collection and heartbeat wait may take (default 600)')
    .option('--artifacts <dir>', `root of the run directories (default ./${DEFAULT_ARTIFACTS_ROOT})`)
    .option('--run-id <id>', 'the run id (default: time and a random suffix)')
    .option('--junit <file>', 'also write the JUnit XML there')
    .option('--guest-collector <path>', 'the collector in the guest, console channel (default /usr/local/libexec/fbxen-collect)')
    .option('--guest-heartbeat <path>', 'the heartbeat in the guest, console channel (default /usr/local/libexec/fbxen-heartbeat)')
    .option('--dest-sr <name-or-uuid>', 'xapi: SR for VM.migrate_send when the disks are not on a shared SR')
    .option('--back-to <host>', 'xl with --to HOST: the name HOST uses to migrate back (default this host name)')
    .option('--host <url>', 'xl: the source dom0, ssh://root@HOST[:PORT] or lab (the running `fbxen lab`; default: this machine); xl runs there over one ssh connection')
    .option('--known-hosts <file>', 'with --host: the known_hosts file that pins the dom0 host key')
    .option('--host-identity <file>', 'with --host: the ssh private key to log in to the dom0 (--identity is the guest\'s, for --ssh)')
    .option('--ca-file <file>', 'xapi: CA certificate for the XAPI TLS connection')
    .option('--insecure', 'xapi: do not verify the XAPI TLS certificate')
    .option('--insecure-http', 'xapi: accept an http:// FBXEN_XAPI_URL (the password travels in clear)')
    .option('--dry-run', 'print the exact plan, contact nothing')
    .action(async (_opts, command: Command) => (await import('./migrate-test.js')).migrateTestAction(await context(), command));
}

function registerLab(program: Command, context: ContextFactory): void {
  const lab = program.command('lab').description('a real Xen host in a QEMU VM on this machine, reached over ssh (docs/lab.md)');
  const dirOption = () => new Option('--dir <dir>', 'the lab directory: images, state, keys (default $XDG_CACHE_HOME/fbxen/lab or ~/.cache/fbxen/lab)');
  lab
    .command('up')
    .description('build (or reuse) the dom0 image, boot Xen under QEMU, wait until xl info answers over ssh')
    .addOption(dirOption())
    .addOption(new Option('--accel <mode>', 'kvm, tcg (emulation) or auto: kvm when /dev/kvm opens and the CPU has vmx/svm (default auto)').choices(['auto', 'kvm', 'tcg']))
    .option('--port <n>', 'the 127.0.0.1 port forwarded to dom0\'s ssh (default: a free one)')
    .option('--memory <MiB>', 'VM memory in MiB, dom0 takes 1024 of it (default 3072)')
    .option('--cpus <n>', 'VM CPUs (default 2)')
    .option('--timeout <sec>', 'seconds from QEMU\'s start until xl info must answer (default 600)')
    .action(async (_opts, cmd: Command) => (await import('./lab.js')).labUpAction(await context(), cmd));
  lab
    .command('status')
    .description('whether the lab runs, how to reach it, its uptime and xl info (--json for scripts)')
    .addOption(dirOption())
    .action(async (_opts, cmd: Command) => (await import('./lab.js')).labStatusAction(await context(), cmd));
  lab
    .command('ssh')
    .description('ssh into the lab\'s dom0 as root, or run CMD there: fbxen lab ssh -- xl list')
    .argument('[cmd...]', 'the command to run in dom0 (after --)')
    .addOption(dirOption())
    .action(async (remote: string[], _opts, cmd: Command) => (await import('./lab.js')).labSshAction(await context(), cmd, remote));
  lab
    .command('down')
    .description('stop the lab (dom0 powers off, else QEMU is killed); the cached image is kept')
    .addOption(dirOption())
    .option('--purge', 'also remove the cached image and the serial log')
    .action(async (_opts, cmd: Command) => (await import('./lab.js')).labDownAction(await context(), cmd));
}

export const commands: CommandRegistrar[] = [registerBuild, registerBoot, registerConfig, registerVerify, registerMigrateTest, registerLab];
