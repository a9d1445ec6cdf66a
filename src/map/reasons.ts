/** Why a Redis record was not migrated. Stable codes: reports, CI scripts, accept files and docs/reports.md depend on them. */
export const REJECT_REASONS = [
  'vanished',
  'wrong_type',
  'value_too_large',
  'key_not_utf8',
  'not_utf8',
  'not_json',
  'not_object',
  'invalid_key_email',
  'missing_user_id',
  'invalid_user_id',
  'invalid_email',
  'email_mismatch',
  'invalid_credits',
  'negative_credits',
  'credits_out_of_range',
  'ambiguous_field',
  'invalid_field',
  'invalid_text',
  'invalid_timestamp',
  'timestamp_out_of_range',
  'value_too_long',
  'value_out_of_range',
  'value_missing',
] as const;
export type RejectReason = (typeof REJECT_REASONS)[number];

/** Why a valid record was held back: both sides are shown, the operator decides. */
export const CONFLICT_REASONS = [
  'duplicate_email',
  'duplicate_user_id',
  'email_taken',
  'early_login',
  'row_not_written_by_tool',
  'changed_in_both',
  'deleted_in_postgres',
  'changed_during_run',
  'refused_by_database',
  'changed_after_merge',
] as const;
export type ConflictReason = (typeof CONFLICT_REASONS)[number];
