import { Command, Option } from 'commander';
import { EXIT, describe } from '../errors.js';
import { scrub } from '../redact.js';
import { verify } from '../core/verify.js';
import { JsonObjectStream } from '../report/json-stream.js';
import { appendPrivateFile, writePrivateFile } from '../report/text-file.js';
import { VerifyFindings } from '../report/verify-findings.js';
import { formatVerifyJunit, formatVerifyJunitError } from '../report/verify-junit.js';
import { formatVerifyMarkdown, formatVerifyMarkdownError, formatVerifyText } from '../report/verify-output.js';
import { readAcceptFile } from './accept-file.js';
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
  accept?: string;
  progress: boolean;
}

export function addVerifyCommand(program: Command, run: (fn: typeof runVerify) => (...args: unknown[]) => Promise<void>): void {
  addReadOptions(addConnectionOptions(program.command('verify').description('prove PostgreSQL holds exactly what migrate would write (read-only)')), {
    writes: false,
  })
    .option('--strict', 'rows only in PostgreSQL (new-app signups) fail verification too')
    .addOption(new Option('--sample <n>', 'check a uniform random sample of n keys (exact per user)'))
    .addOption(new Option('--show <n>', 'differences listed in the summary, and records in each JUnit check (default 20)'))
    .addOption(new Option('--format <format>', 'summary on stdout: text or markdown (default text)'))
    .addOption(new Option('--report <path>', 'JSON report with every difference and the invariants'))
    .addOption(new Option('--markdown <path>', 'also write the markdown summary here (e.g. $GITHUB_STEP_SUMMARY)'))
    .addOption(new Option('--junit <path>', 'also write a JUnit XML result here'))
    .addOption(new Option('--accept <file>', 'known problems the team accepted (key [kind] reason, one a line): listed, counted apart, not failing'))
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
  const accept = readAcceptFile(flags.accept, problems);
  problems.throwIfAny();

  const findings = new VerifyFindings(show);
  const report = flags.report ? await JsonObjectStream.open(flags.report) : undefined;
  try {
    await report?.beginArray('differences');
    const result = await withServers(
      { ...conn, snapshot },
      log,
      2,
      (redis, pool, source) =>
        verify(
          { ...read, strict: flags.strict === true, sample, accept, source },
          {
            redis,
            pool,
            log,
            progress: createProgress(flags.progress, ctx.signal),
            signal: ctx.signal,
            onDifference: async (difference) => {
              findings.add(difference);
              await report?.item(difference);
            },
          },
        ),
      ctx.signal,
    );
    findings.finish();
    if (report) for (const [key, value] of Object.entries(result.report)) await report.field(key, value);
    const markdown = formatVerifyMarkdown(result.report, findings);
    // Both name users' emails: created 0600 like the reports.
    if (flags.markdown) await appendPrivateFile(flags.markdown, markdown);
    if (flags.junit) await writePrivateFile(flags.junit, formatVerifyJunit(result.report, findings));
    ctx.out(format === 'markdown' ? markdown : formatVerifyText(result.report, findings));
    if (result.report.interrupted) return ctx.interruptedExitCode();
    return result.report.ok ? EXIT.ok : EXIT.differences;
  } catch (error) {
    // A partial report must never read as a pass.
    await report?.field('ok', false).catch(() => undefined);
    await report?.field('error', 'verification did not finish: see the exit code and stderr').catch(() => undefined);
    // CI shows the JUnit and the step summary, not stderr: they say in words why there is no verdict.
    const message = `verify could not finish: ${scrub(describe(error))}`;
    await writeCiFailure(flags, message, sample !== undefined).catch((err: unknown) => log.warn({ err: scrub(describe(err)) }, 'writing the CI files failed'));
    throw error;
  } finally {
    await report?.close();
  }
}

async function writeCiFailure(flags: VerifyFlags, message: string, sample: boolean): Promise<void> {
  if (flags.markdown) await appendPrivateFile(flags.markdown, formatVerifyMarkdownError(message, sample));
  if (flags.junit) await writePrivateFile(flags.junit, formatVerifyJunitError(message, sample));
}
