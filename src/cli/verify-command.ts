import { writeFile } from 'node:fs/promises';
import { Command, Option } from 'commander';
import { EXIT } from '../errors.js';
import { verify } from '../core/verify.js';
import { JsonObjectStream } from '../report/json-stream.js';
import { formatVerifyJunit, formatVerifyMarkdown, formatVerifyText } from '../report/verify-output.js';
import { Problems } from './config.js';
import { withServers } from './connect.js';
import { snapshotPlan, type SnapshotFlags } from './snapshot-options.js';
import { addConnectionOptions, setup, type CliContext, type ConnectionFlags } from './context.js';
import { createProgress } from './progress.js';
import { addReadOptions, readOptions, type ReadFlags } from './read-options.js';

interface VerifyFlags extends ConnectionFlags, ReadFlags, SnapshotFlags {
  strict?: boolean;
  sample?: string;
  show?: string;
  format?: string;
  report?: string;
  markdown?: string;
  junit?: string;
  progress: boolean;
}

export function addVerifyCommand(program: Command, run: (fn: typeof runVerify) => (...args: unknown[]) => Promise<void>): void {
  addReadOptions(addConnectionOptions(program.command('verify').description('prove PostgreSQL holds exactly what migrate would write (read-only)')))
    .option('--strict', 'rows only in PostgreSQL (new-app signups) fail verification too')
    .addOption(new Option('--sample <n>', 'check a uniform random sample of n keys (exact per user)'))
    .addOption(new Option('--show <n>', 'differences listed in the summary (default 20)'))
    .addOption(new Option('--format <format>', 'summary on stdout: text or markdown (default text)'))
    .addOption(new Option('--report <path>', 'JSON report with every difference and the invariants'))
    .addOption(new Option('--markdown <path>', 'also write the markdown summary here (e.g. $GITHUB_STEP_SUMMARY)'))
    .addOption(new Option('--junit <path>', 'also write a JUnit XML result here'))
    .option('--no-progress', 'no progress bar')
    .exitOverride()
    .action(run(runVerify));
}

export async function runVerify(flags: VerifyFlags, ctx: CliContext): Promise<number> {
  const problems = new Problems();
  const { conn, log } = setup(flags, ctx, problems);
  const snapshot = snapshotPlan(flags, ctx.env, problems);
  const read = readOptions(flags, conn.match, ctx, problems);
  const sample = flags.sample === undefined ? undefined : problems.integer('--sample', flags.sample, 100, 1, 10_000_000);
  const show = problems.integer('--show', flags.show, 20, 0, 100_000);
  const format = flags.format ?? 'text';
  if (format !== 'text' && format !== 'markdown') problems.add(`--format must be text or markdown, got "${format}"`);
  problems.outputPath('--report', flags.report);
  problems.outputPath('--markdown', flags.markdown);
  problems.outputPath('--junit', flags.junit);
  problems.throwIfAny();

  const report = flags.report ? await JsonObjectStream.open(flags.report) : undefined;
  try {
    await report?.beginArray('differences');
    const result = await withServers(
      { ...conn, snapshot },
      log,
      2,
      (redis, pool, source) =>
        verify(
          { ...read, strict: flags.strict === true, sample, show, source },
          { redis, pool, log, progress: createProgress(flags.progress), signal: ctx.signal, onDifference: report ? (d) => report.item(d) : undefined },
        ),
      ctx.signal,
    );
    if (report) for (const [key, value] of Object.entries(result.report)) await report.field(key, value);
    const markdown = formatVerifyMarkdown(result.report, result.first);
    // Both name users' emails: created 0600 like the reports.
    if (flags.markdown) await writeFile(flags.markdown, markdown, { flag: 'a', mode: 0o600 });
    if (flags.junit) await writeFile(flags.junit, formatVerifyJunit(result.report, result.first), { mode: 0o600 });
    ctx.out(format === 'markdown' ? markdown : formatVerifyText(result.report, result.first));
    if (result.report.interrupted) return ctx.interruptedExitCode();
    return result.report.ok ? EXIT.ok : EXIT.differences;
  } catch (error) {
    // A partial report must never read as a pass.
    await report?.field('ok', false).catch(() => undefined);
    await report?.field('error', 'verification did not finish: see the exit code and stderr').catch(() => undefined);
    throw error;
  } finally {
    await report?.close();
  }
}
