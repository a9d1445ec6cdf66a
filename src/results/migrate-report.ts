// What the commands return: plain data that src/core/ produces and src/report/ reads (CONTRIBUTING.md "Layout").

export type Mode = 'dry-run' | 'apply';

export interface Credits {
  readonly current: number | string;
  readonly used: number | string;
}

export type RunStatus = 'finished' | 'interrupted' | 'failed';

/** The JSON report (`--report`). Field names are a contract: see docs/reports.md "Report format". */
export interface MigrateReport {
  readonly run_id: string;
  readonly mode: Mode;
  /** finished; interrupted (Ctrl-C / SIGTERM: committed batches stay); failed (a server lost, retries spent). */
  readonly status: RunStatus;
  /** Where the records were read (for a resumed run: where the stage it continued was read). */
  readonly source: SourceInfo | null;
  /** Connection losses survived by retrying. */
  readonly retries: number;
  /** The unfinished run this one resumed (its stage and checkpoint), or null. */
  readonly resumed_from: string | null;
  /**
   * An interrupted or failed writing run whose stage the next run of the same command continues (Redis is not
   * read again). False when finished, for a dry-run or reconcile, and for a run stopped while still reading
   * Redis: it wrote nothing, and the next run reads Redis again from the start.
   */
  readonly resumable: boolean;
  readonly started_at: string;
  readonly finished_at: string;
  readonly duration_seconds: number;
  readonly users_per_second: number;
  readonly counts: {
    readonly scanned: number;
    readonly valid: number;
    readonly invalid: number;
    readonly inserted: number;
    readonly updated: number;
    readonly unchanged: number;
    readonly kept_app_changes: number;
    /** Users the tool wrote from this unchanged Redis record whose row the app deleted since: never inserted again. */
    readonly deleted_by_app: number;
    /** Early logins merged into their new-app row (reconcile --apply --merge; planned, without --apply). */
    readonly merged: number;
    readonly conflicts: number;
    readonly whitelist_topups: number;
    readonly scan_duplicates: number;
    /** Read but not decided because the run was interrupted or failed (0 when finished). */
    readonly pending: number;
    /** Records decided and committed by the runs this one resumed: included in the counts above. */
    readonly resumed_skipped: number;
  };
  readonly reasons: Readonly<Record<string, number>>;
  /** null in reports of runs that read no whitelist information (verify, reconcile without --apply). */
  readonly whitelist: WhitelistInfo | null;
  /** App rows whose email is not stored normalised (trimmed, lower-case): the new app may look emails up
   * case-sensitively. The tool treats them as the normalised mailbox. */
  readonly postgres_unnormalised_emails: number | null;
  readonly credits: {
    /** Sum over valid records, as Redis holds them (before the whitelist rule). */
    readonly read: Credits;
    /** Credits added by the whitelist rule to users that are (or would be) in PostgreSQL. */
    readonly whitelist_topup: number | string;
    /** What the new app changed on rows it owns now (kept app changes, and rows it deleted: minus what they held): PostgreSQL's balance minus Redis's. */
    readonly app_difference: Credits;
    /** This run's merges: Redis's side (whitelist rule applied), the new-app rows' balances before, the
     * signup bonus withheld, the merged balances; credits used of both sides. */
    readonly merges: {
      readonly redis: number | string;
      readonly postgres: number | string;
      readonly bonus_withheld: number | string;
      readonly result: number | string;
      readonly used_redis: number | string;
      readonly used_postgres: number | string;
    };
    /** On every merged row (merged now or before): PostgreSQL's balance minus Redis's (plus top-up). */
    readonly merge_difference: Credits;
    /** Per outcome: what PostgreSQL holds (or would hold) for migrated users; the Redis values for conflicts. */
    readonly by_outcome: Readonly<Record<string, Credits>>;
    /** Credits in rows this run inserted or updated (in a dry-run: would). */
    readonly written: Credits;
  };
}

/** Where the records came from (the report names it; a resume continues only a stage from the same one). */
/** Where the records came from (the report names it; a resume continues only a stage from the same one). */
export type SourceInfo = LiveSourceInfo | RdbSourceInfo | RdbClusterSourceInfo;

export interface LiveSourceInfo {
  readonly kind: 'redis' | 'redis-cluster';
  /** Without credentials. */
  readonly url: string;
  /** The Redis server's run_id (it changes when the server restarts), where INFO is allowed. */
  readonly server?: string;
}

/** An RDB snapshot (--rdb), read through a throwaway local redis-server. */
export interface RdbFileInfo {
  /** Absolute path. */
  readonly file: string;
  readonly sha256: string;
  readonly bytes: number;
  /** When the snapshot was written: the RDB's own ctime field, else the file's mtime (ISO 8601). */
  readonly created: string;
}

export interface RdbSourceInfo extends RdbFileInfo {
  readonly kind: 'rdb';
}

/** One RDB per master of a Redis Cluster (--rdb repeated), each read through a throwaway server of its own. */
export interface RdbClusterSourceInfo {
  readonly kind: 'rdb-cluster';
  readonly files: readonly RdbFileInfo[];
}

/** The whitelist a run used, and how it differs from the one the last finished writing run used. */
export interface WhitelistInfo {
  readonly emails: number;
  readonly credits: number;
  /** Whitelisted emails no valid record of the source has (a typo gets no top-up, and nobody would know). */
  readonly unmatched: readonly string[];
  /** null when no earlier finished run recorded one. */
  readonly same_as_last_run: boolean | null;
  readonly last_run: { readonly emails: number; readonly credits: number } | null;
  /** Users topped up by an earlier run who keep the granted balance although this run's whitelist would not
   * (a top-up is granted once). */
  readonly grants_kept: number;
}
