import { APP_KINDS, COLUMN_KINDS, type Difference, type DifferenceKind } from '../results/verify-report.js';

/** One record with a problem: a user whose columns differ, a missing row, a record that cannot be migrated, a row. */
export interface Finding {
  readonly kind: DifferenceKind;
  readonly key: string | null;
  readonly user_id: string | null;
  readonly email: string | null;
  /** One per column for a mismatch, else one. */
  readonly differences: readonly Difference[];
  /** Every difference of the record is accepted (--accept): it does not fail. */
  readonly accepted: boolean;
}

/** The first few of a list and how long it is. */
export interface Listing<T> {
  readonly first: readonly T[];
  readonly count: number;
}

class Bounded<T> implements Listing<T> {
  readonly first: T[] = [];
  count = 0;

  constructor(private readonly limit: number) {}

  add(item: T): void {
    this.count++;
    if (this.first.length < this.limit) this.first.push(item);
  }
}

/**
 * What the human outputs list, kept while verify streams every difference to the report: per kind, the first
 * `limit` records that fail and the first `limit` accepted ones, and the first `limit` differences of each for
 * the tables. A record's column differences arrive together (VerifyIo.onDifference).
 */
export class VerifyFindings {
  private pending: Difference[] = [];
  private readonly failingByKind = new Map<DifferenceKind, Bounded<Finding>>();
  private readonly acceptedByKind = new Map<DifferenceKind, Bounded<Finding>>();
  private readonly rows: Bounded<Difference>;
  private readonly acceptedRowList: Bounded<Difference>;
  private readonly appRowList: Bounded<Difference>;

  constructor(readonly limit: number) {
    this.rows = new Bounded(limit);
    this.acceptedRowList = new Bounded(limit);
    this.appRowList = new Bounded(limit);
  }

  add(difference: Difference): void {
    const last = this.pending[0];
    if (last && !sameRecord(last, difference)) this.flush();
    this.pending.push(difference);
    (difference.accepted ? this.acceptedRowList : APP_KINDS.has(difference.kind) ? this.appRowList : this.rows).add(difference);
  }

  /** Call once every difference is in. */
  finish(): this {
    this.flush();
    return this;
  }

  /** Records of this kind that fail (or, for rows only in PostgreSQL without --strict, are listed). */
  failing(kind: DifferenceKind): Listing<Finding> {
    return this.failingByKind.get(kind) ?? EMPTY;
  }

  /** Records of this kind whose every difference is accepted. */
  accepted(kind: DifferenceKind): Listing<Finding> {
    return this.acceptedByKind.get(kind) ?? EMPTY;
  }

  /** The app's own work since the tool's write (changed_by_app, deleted_by_app), one per column, not accepted. */
  get appDifferences(): Listing<Difference> {
    return this.appRowList;
  }

  /** Differences not accepted and not the app's work, one per column, for the summary tables. */
  get differences(): Listing<Difference> {
    return this.rows;
  }

  /** Accepted differences, one per column. */
  get acceptedDifferences(): Listing<Difference> {
    return this.acceptedRowList;
  }

  private flush(): void {
    const [first] = this.pending;
    if (!first) return;
    const accepted = this.pending.every((d) => d.accepted !== undefined);
    const finding: Finding = { kind: first.kind, key: first.key, user_id: first.user_id, email: first.email, differences: this.pending, accepted };
    const byKind = accepted ? this.acceptedByKind : this.failingByKind;
    let list = byKind.get(first.kind);
    if (!list) byKind.set(first.kind, (list = new Bounded(this.limit)));
    list.add(finding);
    this.pending = [];
  }
}

const EMPTY: Listing<never> = { first: [], count: 0 };

/** Only the per-column kinds have several differences (one per column), emitted one after the other. */
function sameRecord(a: Difference, b: Difference): boolean {
  return COLUMN_KINDS.has(a.kind) && a.kind === b.kind && a.key === b.key && a.user_id === b.user_id;
}
