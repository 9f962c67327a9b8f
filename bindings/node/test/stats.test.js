'use strict'
// `store.stats()`: a plain object of the handle's counters, moving as core defines them
// (docs/metrics.md), with the names of every binding in camelCase; and the prom-client
// example (examples/prom-metrics.js) scraped.
const test = require('node:test')
const assert = require('node:assert/strict')
const { execFileSync } = require('node:child_process')
const path = require('node:path')

const client = require('prom-client')
const { KeyStore } = require('..')
const { tempStorePath } = require('./helpers/common')
const { registerKeysteadMetrics } = require('../examples/prom-metrics')

const CODES = [
  'valid',
  'missing',
  'malformed',
  'not_found',
  'disabled',
  'revoked',
  'expired',
  'insufficient_scope',
]
const HOUR = 3_600_000

// No background flusher, and no change-feed read but after this handle's own writes.
function open(t, location = tempStorePath()) {
  const store = KeyStore.open(location, { flushIntervalMs: 0, refreshIntervalMs: HOUR })
  t.after(() => store.close())
  return store
}

test('a new handle has counted nothing', (t) => {
  const stats = open(t).stats()
  assert.deepEqual(Object.keys(stats.outcomes), CODES)
  assert.ok(Object.values(stats.outcomes).every((n) => n === 0))
  assert.equal(stats.verifications, 0)
  assert.equal(stats.lastRefreshAgeMs, null)
  assert.deepEqual(Object.keys(stats), [
    'outcomes',
    'verifications',
    'verifyErrors',
    'cacheHits',
    'cacheMisses',
    'refreshes',
    'refreshFailures',
    'flushes',
    'flushFailures',
    'usagePending',
    'lastRefreshAgeMs',
    'cachedKeys',
  ])
})

test('counters move as defined', (t) => {
  const store = open(t)
  const good = store.create({ name: 'good', scopes: ['read'] })
  const revoked = store.create({ name: 'revoked' })
  store.revoke(revoked.info.id)
  for (let i = 0; i < 3; i++) assert.ok(store.verify(good.key, { scopes: ['read'] }).ok)
  assert.equal(store.verify(revoked.key).code, 'revoked')
  assert.equal(store.verifyHeader('Bearer nonsense').code, 'malformed')
  assert.equal(store.verifyHeader(undefined).code, 'missing')
  assert.equal(store.verify(good.key, { scopes: ['write'] }).code, 'insufficient_scope')
  assert.throws(() => store.verify(good.key, { scopes: ['not a scope'] }), {
    code: 'KEYSTEAD_INVALID_ARGUMENT',
  })

  const stats = store.stats()
  assert.deepEqual(stats.outcomes, {
    valid: 3,
    missing: 1,
    malformed: 1,
    not_found: 0,
    disabled: 0,
    revoked: 1,
    expired: 0,
    insufficient_scope: 1,
  })
  assert.equal(stats.verifications, 7)
  assert.equal(stats.verifyErrors, 1)
  // The first verify of each key read it (a miss); the rest were answered from memory.
  assert.deepEqual([stats.cacheMisses, stats.cacheHits], [2, 3])
  assert.equal(stats.cachedKeys, 2)
  assert.equal(stats.usagePending, 3)
  assert.ok(stats.refreshes >= 1)
  assert.equal(stats.refreshFailures, 0)
  assert.equal(typeof stats.lastRefreshAgeMs, 'number')
  assert.ok(stats.lastRefreshAgeMs >= 0 && stats.lastRefreshAgeMs < HOUR)

  store.flush()
  const after = store.stats()
  assert.deepEqual([after.flushes, after.flushFailures, after.usagePending], [1, 0, 0])
  assert.ok(!JSON.stringify(after).includes(good.key))
})

test('stats of a closed store throw KEYSTEAD_CLOSED', () => {
  const store = KeyStore.open(tempStorePath())
  store.close()
  assert.throws(() => store.stats(), { code: 'KEYSTEAD_CLOSED' })
})

function samples(text) {
  const out = new Map()
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const at = line.lastIndexOf(' ')
    out.set(line.slice(0, at), Number(line.slice(at + 1)))
  }
  return out
}

test('the prom-client example: a scrape shows the counters, and they move', async (t) => {
  const store = open(t)
  const { key } = store.create({ name: 'good' })
  store.verify(key)
  store.verify(key)
  store.verify('ks_typo')
  const registry = new client.Registry()
  registerKeysteadMetrics(store, registry)
  assert.equal(registry.contentType.split(';')[0], 'text/plain')

  const first = samples(await registry.metrics())
  assert.equal(first.get('keystead_verifications_total{outcome="valid"}'), 2)
  assert.equal(first.get('keystead_verifications_total{outcome="malformed"}'), 1)
  assert.equal(first.get('keystead_verifications_total{outcome="expired"}'), 0)
  assert.equal(first.get('keystead_cache_misses_total'), 1)
  assert.equal(first.get('keystead_cache_hits_total'), 1)
  assert.equal(first.get('keystead_usage_pending'), 2)
  assert.equal(first.get('keystead_cached_keys'), 1)
  assert.equal(first.get('keystead_flushes_total'), 0)
  assert.ok(first.get('keystead_last_refresh_age_seconds') >= 0)

  store.flush()
  const text = await registry.metrics()
  const second = samples(text)
  assert.equal(second.get('keystead_flushes_total'), 1)
  assert.equal(second.get('keystead_usage_pending'), 0)
  // Counters are set from the snapshot, not added to: a second scrape does not double them.
  assert.equal(second.get('keystead_verifications_total{outcome="valid"}'), 2)
  assert.ok(!text.includes(key))
})

test('the prom-client example runs as a script', () => {
  const script = path.join(__dirname, '..', 'examples', 'prom-metrics.js')
  const text = execFileSync(process.execPath, [script], { encoding: 'utf8', timeout: 120_000 })
  const parsed = samples(text)
  assert.equal(parsed.get('keystead_verifications_total{outcome="valid"}'), 1)
  assert.equal(parsed.get('keystead_verifications_total{outcome="malformed"}'), 1)
})
