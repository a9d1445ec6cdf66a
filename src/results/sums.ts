/** What a set of records adds up to: enough for the tally, nothing per record. */
export interface Sums {
  readonly n: number;
  readonly source: bigint;
  readonly topup: bigint;
  readonly used: bigint;
  readonly topped: number;
}
