#!/usr/bin/env node
// keystead's Node.js binding vs a hand-rolled Node.js key store, side by side (issue 8).
//
// The peer is what a careful developer writes by hand: keys `pk_` + 16 hex id + 64 hex secret;
// better-sqlite3 (12.x) in WAL mode (synchronous=NORMAL), table
// `keys(id TEXT PRIMARY KEY, salt BLOB, hash BLOB, ...)`, prepared statements created once and
// reused; HMAC-SHA256(pepper, salt || secret) with node:crypto; crypto.timingSafeEqual. It does
// less than keystead (no checksum, audit log or usage counts).
//
// The keystead store of N keys is filled by the Rust driver's `build keystead` (core
// create_many): the Node binding has no bulk import. The binding's own import rate is measured
// with `create` (one transaction per key) on --create-n keys, next to the peer's
// one-commit-per-key rate on the same count.
//
// Verify throughput: both stores open in this process, interleaved rounds (the order
// alternates), medians and the median of per-round ratios. `RESULT ` lines are for run.sh;
// `NOTAVAILABLE` lines say what could not be measured and why.
//
//   node node_peer.mjs [--n 100000] [--sample 10000] [--rounds 5] [--round-ms 500]
//                      [--create-n 1000] [--bin PATH] [--addon PATH] [--dir DIR] [--keep]
//                      [--breakdown]
//
// --breakdown also times, on the keystead store, what a verify call costs apart from the core's
// work: a trivial getter (the napi call itself), a malformed key (no key object in the result),
// valid keys without and with the scopes option.
//
// The binding is loaded from --addon / KEYSTEAD_NODE_ADDON (a built keystead .node file), else
// from bindings/node (its index.js loader).

import { execFileSync } from 'node:child_process'
import crypto from 'node:crypto'
import fs from 'node:fs'
import { createRequire } from 'node:module'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const require = createRequire(import.meta.url)
const here = path.dirname(fileURLToPath(import.meta.url))
const SCOPE = 'chat:completions'
const BATCH = 10_000

function parseArgs() {
  const env = process.env
  const a = {
    n: Number(env.KEYSTEAD_COMPARE_NODE_N ?? 100_000),
    sample: 10_000,
    rounds: Number(env.KEYSTEAD_COMPARE_ROUNDS ?? 5),
    roundMs: Number(env.KEYSTEAD_COMPARE_ROUND_MS ?? 500),
    createN: 1000,
    bin: env.KEYSTEAD_COMPARE_BIN ?? path.join(here, 'rust-peer/target/release/keystead-compare'),
    addon: env.KEYSTEAD_NODE_ADDON ?? null,
    dir: null,
    keep: false,
  }
  const argv = process.argv.slice(2)
  const names = { '--n': 'n', '--sample': 'sample', '--rounds': 'rounds', '--round-ms': 'roundMs', '--create-n': 'createN' }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]
    if (names[arg]) a[names[arg]] = Number(argv[++i].replaceAll('_', ''))
    else if (arg === '--bin') a.bin = argv[++i]
    else if (arg === '--addon') a.addon = argv[++i]
    else if (arg === '--dir') a.dir = argv[++i]
    else if (arg === '--keep') a.keep = true
    else if (arg === '--breakdown') a.breakdown = true
    else throw new Error(`unknown argument ${arg}`)
  }
  for (const k of ['n', 'sample', 'rounds', 'roundMs', 'createN']) {
    if (!(Number.isInteger(a[k]) && a[k] > 0)) throw new Error(`--${k} must be a positive integer`)
  }
  a.sample = Math.min(a.sample, a.n)
  return a
}

const result = (name, value) => console.log(`RESULT node.${name}=${value}`)
const unavailable = (what, why) => console.log(`NOTAVAILABLE node.${what}: ${why}`)

// ---------------------------------------------------------------------------------------------
// The hand-rolled peer

const PEER_PEPPER = Buffer.from('peer-bench-pepper-0123456789abcd')
const PEER_PREFIX = 'pk_'
const PEER_KEY_LEN = 3 + 16 + 64
const HEX64 = /^[0-9a-f]{64}$/

class Peer {
  constructor(Database, file, synchronous = 'NORMAL') {
    this.db = new Database(file)
    this.db.pragma('journal_mode = WAL')
    this.db.pragma(`synchronous = ${synchronous}`)
    this.db.exec(`CREATE TABLE IF NOT EXISTS keys (
      id TEXT PRIMARY KEY,
      salt BLOB NOT NULL,
      hash BLOB NOT NULL,
      name TEXT NOT NULL,
      scopes TEXT NOT NULL,
      state INTEGER NOT NULL DEFAULT 0,
      created_at INTEGER NOT NULL,
      expires_at INTEGER
    )`)
    this.lookup = this.db.prepare('SELECT salt, hash, state, expires_at, scopes FROM keys WHERE id = ?')
    this.insert = this.db.prepare(
      'INSERT INTO keys (id, salt, hash, name, scopes, state, created_at) VALUES (?, ?, ?, ?, ?, 0, ?)')
    this.insertMany = this.db.transaction((rows) => {
      for (const r of rows) this.insert.run(r)
    })
  }

  row(name, now) {
    const id = crypto.randomBytes(8).toString('hex')
    const secret = crypto.randomBytes(32)
    const salt = crypto.randomBytes(16)
    const hash = crypto.createHmac('sha256', PEER_PEPPER).update(salt).update(secret).digest()
    return [[id, salt, hash, name, SCOPE, now], PEER_PREFIX + id + secret.toString('hex')]
  }

  createMany(names) {
    const now = Date.now()
    const rows = []
    const keys = []
    for (const name of names) {
      const [r, k] = this.row(name, now)
      rows.push(r)
      keys.push(k)
    }
    this.insertMany(rows)
    return keys
  }

  create(name) {
    const [r, k] = this.row(name, Date.now())
    this.insert.run(r)
    return k
  }

  verify(presented, scope) {
    if (typeof presented !== 'string' || presented.length !== PEER_KEY_LEN || !presented.startsWith(PEER_PREFIX)) {
      return 'malformed'
    }
    const id = presented.slice(3, 19)
    const secretHex = presented.slice(19)
    if (!HEX64.test(secretHex)) return 'malformed'
    const row = this.lookup.get(id)
    if (row === undefined) return 'not_found'
    const computed = crypto.createHmac('sha256', PEER_PEPPER).update(row.salt).update(Buffer.from(secretHex, 'hex')).digest()
    if (computed.length !== row.hash.length || !crypto.timingSafeEqual(computed, row.hash)) return 'not_found'
    if (row.state !== 0) return 'revoked'
    if (row.expires_at !== null && row.expires_at <= Date.now()) return 'expired'
    if (scope && !row.scopes.split(' ').includes(scope)) return 'insufficient_scope'
    return 'valid'
  }

  close() {
    this.db.close()
  }
}

// ---------------------------------------------------------------------------------------------
// Measurement

// Operations per second of wall time, and per second of the process's CPU time (Node 20 has
// no per-thread CPU clock; the process's other threads, GC and keystead's usage flusher, add
// a little to it, so the CPU figure is slightly conservative).
function rate(ms, op) {
  const cpuStart = process.cpuUsage()
  const start = process.hrtime.bigint()
  const limit = BigInt(Math.round(ms * 1e6))
  let done = 0
  for (;;) {
    for (let j = 0; j < 64; j++) op(done++)
    const elapsed = process.hrtime.bigint() - start
    if (elapsed >= limit) {
      const cpu = process.cpuUsage(cpuStart)
      return [done / (Number(elapsed) / 1e9), done / ((cpu.user + cpu.system) / 1e6)]
    }
  }
}

function interleaved(rounds, ms, ops) {
  for (const op of ops) rate(ms / 4, op) // warm-up (JIT, caches)
  const rates = ops.map(() => [])
  const cpu = ops.map(() => [])
  for (let r = 0; r < rounds; r++) {
    const order = ops.map((_, i) => i)
    if (r % 2) order.reverse()
    for (const j of order) {
      const [wall, perCpu] = rate(ms, ops[j])
      rates[j].push(wall)
      cpu[j].push(perCpu)
    }
    process.stderr.write('.')
  }
  process.stderr.write('\n')
  return [rates, cpu]
}

function median(values) {
  const v = [...values].sort((a, b) => a - b)
  const m = v.length >> 1
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2
}

const ratio = (a, b) => median(a.map((x, i) => x / b[i]))
const typo = (key) => key.slice(0, -1) + (key.at(-1) === 'a' ? 'b' : 'a')

function loadBinding(addon) {
  try {
    if (addon) return { binding: require(path.resolve(addon)) }
    return { binding: require(path.join(here, '../../bindings/node/index.js')) }
  } catch (e) {
    return { error: `cannot load the keystead Node binding (${addon ?? 'bindings/node'}): ${e.message.split('\n')[0]}` }
  }
}

function main() {
  const a = parseArgs()
  let Database
  try {
    Database = require('better-sqlite3')
  } catch (e) {
    console.log(`NOTAVAILABLE node: better-sqlite3 not installed (npm ci in benches/compare): ${e.message.split('\n')[0]}`)
    return 1
  }
  const { binding, error } = loadBinding(a.addon)
  const work = a.dir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'keystead-compare-node-'))
  fs.mkdirSync(work, { recursive: true })
  process.stderr.write(`node_peer: Node ${process.version}, N=${a.n}, sample ${a.sample}, ${a.rounds} rounds of ${a.roundMs} ms, in ${work}\n`)
  result('n', a.n)
  try {
    // --- peer: bulk import of N keys, one transaction per batch
    for (const f of ['peer.sqlite', 'peer.sqlite-wal', 'peer.sqlite-shm']) fs.rmSync(path.join(work, f), { force: true })
    const peer = new Peer(Database, path.join(work, 'peer.sqlite'))
    const stride = Math.max(Math.floor(a.n / a.sample), 1)
    const peerSample = []
    let t0 = performance.now()
    for (let made = 0; made < a.n;) {
      const n = Math.min(a.n - made, BATCH)
      const names = Array.from({ length: n }, (_, i) => `bench-${made + i}`)
      peer.createMany(names).forEach((k, i) => {
        if ((made + i) % stride === 0 && peerSample.length < a.sample) peerSample.push(k)
      })
      made += n
    }
    result('peer.import_keys_per_s', (a.n / ((performance.now() - t0) / 1000)).toFixed(0))

    // --- per-key create (one transaction each), both sides, in two interleaved halves
    const peerSingle = new Peer(Database, path.join(work, 'peer-single.sqlite'))
    let ksSingle = null
    if (binding) {
      try {
        ksSingle = binding.KeyStore.open(path.join(work, 'create-single.redb'))
      } catch (e) {
        unavailable('keystead.create_keys_per_s', `KeyStore.open failed: ${e.message}`)
      }
    }
    const half = Math.max(a.createN >> 1, 1)
    let peerT = 0
    let ksT = 0
    for (let part = 0; part < 2; part++) {
      t0 = performance.now()
      for (let i = 0; i < half; i++) peerSingle.create(`single-${part}-${i}`)
      peerT += performance.now() - t0
      if (ksSingle) {
        t0 = performance.now()
        for (let i = 0; i < half; i++) ksSingle.create({ name: `single-${part}-${i}`, scopes: [SCOPE] })
        ksT += performance.now() - t0
      }
    }
    peerSingle.close()
    result('peer.create_keys_per_s', ((2 * half) / (peerT / 1000)).toFixed(0))
    if (ksSingle) {
      ksSingle.close()
      result('keystead.create_keys_per_s', ((2 * half) / (ksT / 1000)).toFixed(0))
    }

    // --- keystead store of N keys, pre-filled by the Rust driver
    let store = null
    if (!binding) {
      unavailable('keystead', error)
    } else if (!fs.existsSync(a.bin)) {
      unavailable('keystead', `the Rust driver ${a.bin} is not built (cargo build --release in benches/compare/rust-peer; run.sh does it)`)
    } else {
      process.stderr.write(`pre-filling keystead with ${a.n} keys (${a.bin} build keystead) ...\n`)
      const out = execFileSync(a.bin, ['build', 'keystead', '--n', String(a.n), '--sample', String(a.sample), '--dir', work],
        { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] })
      const line = out.split('\n').find((l) => l.startsWith('CHILD ')) ?? ''
      const fields = Object.fromEntries(line.slice(6).split(' ').map((kv) => kv.split('=')))
      result('keystead.prefill_keys_per_s', fields.import_keys_per_s)
      store = binding.KeyStore.open(path.join(work, 'keystead.redb'))
    }

    // --- verify: valid keys, then one-character typos
    const opts = { scopes: [SCOPE] }
    const peerTypos = peerSample.map(typo)
    const peerValid = (i) => {
      if (peer.verify(peerSample[i % peerSample.length], SCOPE) !== 'valid') throw new Error('peer: not valid')
    }
    const peerTypo = (i) => {
      if (peer.verify(peerTypos[i % peerTypos.length], SCOPE) !== 'not_found') throw new Error('peer: typo accepted')
    }
    if (store) {
      const ksSample = fs.readFileSync(path.join(work, 'keystead.sample'), 'utf8').split('\n').filter(Boolean)
      const ksTypos = ksSample.map(typo)
      const ksValid = (i) => {
        if (!store.verify(ksSample[i % ksSample.length], opts).ok) throw new Error('keystead: not valid')
      }
      const ksTypo = (i) => {
        if (store.verify(ksTypos[i % ksTypos.length], opts).code !== 'malformed') throw new Error('keystead: typo not malformed')
      }
      for (const [what, ops] of [['verify', [ksValid, peerValid]], ['typo', [ksTypo, peerTypo]]]) {
        process.stderr.write(what === 'verify' ? 'verify, valid keys\n' : 'verify, one-character typo\n')
        const [[ks, pr], [ksC, prC]] = interleaved(a.rounds, a.roundMs, ops)
        result(`keystead.${what}_per_s`, median(ks).toFixed(0))
        result(`peer.${what}_per_s`, median(pr).toFixed(0))
        result(`ratio.${what}`, ratio(ks, pr).toFixed(2))
        result(`keystead.${what}_per_cpu_s`, median(ksC).toFixed(0))
        result(`peer.${what}_per_cpu_s`, median(prC).toFixed(0))
        result(`ratio.${what}_cpu`, ratio(ksC, prC).toFixed(2))
      }
      if (a.breakdown) {
        process.stderr.write('breakdown of the binding\'s verify call\n')
        const parts = {
          prefix_getter: () => store.prefix,
          malformed_no_options: (i) => store.verify(ksTypos[i % ksTypos.length]),
          valid_no_options: (i) => store.verify(ksSample[i % ksSample.length]),
          valid_with_scopes: (i) => store.verify(ksSample[i % ksSample.length], opts),
        }
        const [rates] = interleaved(a.rounds, a.roundMs, Object.values(parts))
        Object.keys(parts).forEach((name, j) => result(`breakdown.${name}_ns`, (1e9 / median(rates[j])).toFixed(0)))
      }
      store.close()
    } else {
      process.stderr.write('verify, valid keys (peer only)\n')
      const [[pr], [prC]] = interleaved(a.rounds, a.roundMs, [peerValid])
      result('peer.verify_per_s', median(pr).toFixed(0))
      result('peer.verify_per_cpu_s', median(prC).toFixed(0))
    }
    peer.close()
  } finally {
    if (!a.keep && !a.dir) fs.rmSync(work, { recursive: true, force: true })
  }
  return 0
}

process.exitCode = main()
