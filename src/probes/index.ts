/** Every probe of fbxen-bundle/1, in report order (ids are stable: reports, JSON and JUnit use them). */
import { blkfrontFlush } from './blkfront-flush.js';
import { cdrom } from './cdrom.js';
import { genericXenhvm } from './generic-xenhvm.js';
import { migration } from './migration.js';
import { netfront } from './netfront.js';
import { pvIpi } from './pv-ipi.js';
import { pvTimer } from './pv-timer.js';
import type { Probe } from './types.js';
import { vectorCallback } from './vector-callback.js';
import { xenGuest } from './xen-guest.js';

export const allProbes: readonly Probe<unknown>[] = [xenGuest, genericXenhvm, vectorCallback, pvTimer, pvIpi, blkfrontFlush, cdrom, netfront, migration];

export const probeIds = allProbes.map((p) => p.id);

export type { Probe, ProbeOutcome, Verdict } from './types.js';
