import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { freePort } from './pgbouncer.js';

export interface Certificates {
  readonly dir: string;
  /** The CA that signed the server certificate (for --database-ca / --redis-ca). */
  readonly ca: string;
  /** A CA that signed nothing here: verification against it must fail. */
  readonly otherCa: string;
  readonly cert: string;
  readonly key: string;
}

/** A throwaway CA and a server certificate for localhost / 127.0.0.1, made with openssl. */
export function makeCertificates(): Certificates {
  const dir = mkdtempSync(join(tmpdir(), 'mu-tls-'));
  chmodSync(dir, 0o755);
  const run = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  for (const name of ['ca', 'other-ca']) {
    run('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', `/CN=mu test ${name}`, '-keyout', `${name}.key`, '-out', `${name}.pem`);
  }
  run('req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=localhost', '-keyout', 'server.key', '-out', 'server.csr');
  writeFileSync(join(dir, 'san.ext'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n');
  run('x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '2', '-extfile', 'san.ext', '-out', 'server.pem');
  return { dir, ca: join(dir, 'ca.pem'), otherCa: join(dir, 'other-ca.pem'), cert: join(dir, 'server.pem'), key: join(dir, 'server.key') };
}

export interface TlsServer {
  readonly port: number;
  stop(): Promise<void>;
}

function pgBin(name: string): string {
  const versions = readdirSync('/usr/lib/postgresql').sort().reverse();
  for (const v of versions) {
    const path = `/usr/lib/postgresql/${v}/bin/${name}`;
    if (existsSync(path)) return path;
  }
  return name;
}

/**
 * A throwaway PostgreSQL that accepts TLS connections only (pg_hba: hostssl), as Supabase does with
 * "enforce SSL". PostgreSQL refuses to run as root, so as root it runs as the postgres user.
 */
export async function startTlsPostgres(certs: Certificates): Promise<TlsServer> {
  const dir = mkdtempSync(join(tmpdir(), 'mu-pg-tls-'));
  const data = join(dir, 'data');
  mkdirSync(data);
  const asRoot = userInfo().uid === 0;
  const owner = asRoot ? Number(execFileSync('id', ['-u', 'postgres']).toString()) : userInfo().uid;
  const group = asRoot ? Number(execFileSync('id', ['-g', 'postgres']).toString()) : userInfo().gid;
  for (const path of [dir, data]) chownSync(path, owner, group);
  chmodSync(dir, 0o755);
  chmodSync(data, 0o700);
  const as = (bin: string, args: string[]) =>
    asRoot ? execFileSync('runuser', ['-u', 'postgres', '--', bin, ...args], { stdio: 'pipe' }) : execFileSync(bin, args, { stdio: 'pipe' });
  as(pgBin('initdb'), ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync']);
  // The key must belong to the server's user and be readable by it alone.
  execFileSync('cp', [certs.cert, join(data, 'server.pem')]);
  execFileSync('cp', [certs.key, join(data, 'server.key')]);
  for (const file of ['server.pem', 'server.key']) {
    chownSync(join(data, file), owner, group);
    chmodSync(join(data, file), 0o600);
  }
  const port = await freePort();
  writeFileSync(
    join(data, 'postgresql.auto.conf'),
    [
      `port = ${port}`,
      `listen_addresses = '127.0.0.1'`,
      `unix_socket_directories = '${dir}'`,
      'ssl = on',
      `ssl_cert_file = 'server.pem'`,
      `ssl_key_file = 'server.key'`,
      'fsync = off',
      '',
    ].join('\n'),
  );
  writeFileSync(join(data, 'pg_hba.conf'), 'local all all trust\nhostssl all all 127.0.0.1/32 trust\n');
  as(pgBin('pg_ctl'), ['-D', data, '-l', join(dir, 'log'), '-w', '-t', '30', 'start']);
  return {
    port,
    stop: async () => {
      try {
        as(pgBin('pg_ctl'), ['-D', data, '-m', 'immediate', '-w', 'stop']);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}

/** A throwaway redis-server that speaks TLS only (no plain port). */
export async function startTlsRedis(certs: Certificates): Promise<TlsServer> {
  const port = await freePort();
  const child = spawn(
    'redis-server',
    [
      '--port',
      '0',
      '--tls-port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--save',
      '',
      '--appendonly',
      'no',
      '--tls-cert-file',
      certs.cert,
      '--tls-key-file',
      certs.key,
      '--tls-ca-cert-file',
      certs.ca,
      '--tls-auth-clients',
      'no',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let log = '';
  child.stdout.on('data', (chunk: Buffer) => (log += chunk.toString()));
  const deadline = Date.now() + 10_000;
  while (!log.includes('Ready to accept connections')) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`redis-server with TLS did not start:\n${log}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    port,
    stop: async () => {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
      if (child.exitCode === null) child.kill('SIGKILL');
    },
  };
}
