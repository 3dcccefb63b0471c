/**
 * The contract between the tar stream (src/core/imaging/) and the UFS2 writer (src/core/ufs2/).
 * Paths are normalised and relative: components joined by '/', no '.', '..' or empty components;
 * the root directory is ''. Metadata is numeric, straight from the tar headers (no passwd lookups).
 */

/** UFS di_flags bits (sys/sys/stat.h chflags). */
export const FileFlags = {
  UF_NODUMP: 0x00000001,
  UF_IMMUTABLE: 0x00000002,
  UF_APPEND: 0x00000004,
  UF_OPAQUE: 0x00000008,
  UF_NOUNLINK: 0x00000010,
  SF_ARCHIVED: 0x00010000,
  SF_IMMUTABLE: 0x00020000, // schg
  SF_APPEND: 0x00040000,
  SF_NOUNLINK: 0x00100000,
  SF_SNAPSHOT: 0x00200000,
} as const;

export interface FsMeta {
  /** Permission bits including setuid, setgid and sticky (0o7777); the file type comes from the entry kind. */
  mode: number;
  uid: number;
  gid: number;
  /** Modification time in seconds (integer) and nanoseconds; clamped to the build timestamp by the writer. */
  mtime: number;
  mtimeNsec?: number;
  /** UFS file flags (FileFlags bits). */
  flags: number;
}

/** Lane 1 is the leading lane of Ufs2Options.leadingLane; lane 0 is everything else. */
export type Lane = 0 | 1;

export interface Ufs2Options {
  /** File system size in bytes (a multiple of the fragment size; the writer rounds down). */
  sizeBytes: number;
  /** Block size, default 32768 (FreeBSD newfs default). */
  blockSize?: number;
  /** Fragment size, default 4096 (FreeBSD newfs default). */
  fragmentSize?: number;
  /** Bytes of data space per inode (newfs -i), default as FreeBSD newfs: 2 * fragment size. */
  bytesPerInode?: number;
  /** Reserved space percentage (newfs -m), default 8. */
  minFreePercent?: number;
  /** Volume label (newfs -L), up to 31 bytes of [A-Za-z0-9._-]; none by default. */
  volumeLabel?: string;
  /**
   * Seconds since the epoch: superblock and cylinder group times, inode ctimes, and the clamp for inode
   * times. Read only in finish() (the caller may set it after streaming: by default it is the newest
   * entry's mtime, known only at the end).
   */
  timestamp: number;
  /** Seeds fs_id and inode generation numbers, so the same seed gives the same bytes. */
  seed: string;
  /**
   * Room set aside at the start of the data area for a second lane of files (`file(..., lane 1)`), sized
   * for the worst case of this much file data in this many entries. Two streams can then be written at
   * once, each into its own region in its own order, and the image does not depend on how they
   * interleave in time. Lane 0 (the default) starts after the room.
   */
  leadingLane?: { dataBytes: number; entries: number };
  /**
   * How paths and symlink targets become bytes: 'utf8' (default) writes text as UTF-8; 'bytes' takes
   * each character (0-255) as one byte, so names that are not UTF-8 (tar's raw bytes) stay exact.
   */
  nameEncoding?: 'utf8' | 'bytes';
}

/** Where the writer puts bytes: offsets are relative to the start of the file system. */
export interface BlockTarget {
  /** Must not keep `data` after the promise resolves (the writer reuses its buffers). */
  write(data: Uint8Array, offset: number): Promise<void>;
  /** Writes out anything buffered; finish() calls it last. */
  flush?(): Promise<void>;
}

export interface Ufs2Stats {
  sizeBytes: number;
  blockSize: number;
  fragmentSize: number;
  cylinderGroups: number;
  inodesTotal: number;
  inodesUsed: number;
  fragmentsTotal: number;
  fragmentsFree: number;
  dataBytes: number;
}

export interface Ufs2Writer {
  /** Creates or updates a directory (a repeated directory merges: the later metadata wins). */
  directory(path: string, meta: FsMeta, lane?: Lane): void;
  symlink(path: string, target: string, meta: FsMeta, lane?: Lane): void;
  /** A second name for an existing regular file (hard link). */
  hardlink(path: string, existingPath: string, lane?: Lane): void;
  /**
   * A regular file of `size` bytes whose data arrives in `data`; each chunk goes to its final place on
   * arrival. Chunks are not kept after the call that consumes them. Await it before the next entry of
   * the same lane; lane 1's files go to the room of Ufs2Options.leadingLane.
   */
  file(path: string, meta: FsMeta, size: number, data: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, lane?: Lane): Promise<void>;
  /** Writes inodes, directories, bitmaps, summaries and superblocks. Throws if the content did not fit. */
  finish(): Promise<Ufs2Stats>;
}
