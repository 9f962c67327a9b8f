'use strict'
// The binding on a PostgreSQL store (fleet mode, postgres:// locations): the shared lifecycle
// vectors, and two handles as two hosts (a key created on one verifies on the other at once;
// a revocation and usage reach the other). Needs the throwaway server of
// scripts/test-postgres.sh (scripts/test-node.sh runs the suite under it): without
// KEYSTEAD_TEST_PG_URL these tests fail, they never skip.
const test = require('node:test')
const assert = require('node:assert/strict')
const { execFileSync } = require('node:child_process')

const { KeyStore } = require('..')
const { loadVectors, poll } = require('./helpers/common')
const { runLifecycle, ALL_CODES } = require('./helpers/lifecycle')

let schemas = 0

/** A location on a new, empty schema of the test server (plain TCP: the test cluster is on
 * loopback and its TLS certificate is self-signed, which keystead would refuse). */
function pgLocation() {
  const url = process.env.KEYSTEAD_TEST_PG_URL
  if (!url) {
    assert.fail('KEYSTEAD_TEST_PG_URL is not set: run under scripts/test-postgres.sh (scripts/test-node.sh does)')
  }
  const schema = `ks_node${process.pid}_${schemas++}_${Date.now() % 1e9}`
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('PG')))
  execFileSync('psql', ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-c', `CREATE SCHEMA ${schema}`, url], { env })
  return `${url}${url.includes('?') ? '&' : '?'}options=-csearch_path%3D${schema}&sslmode=disable`
}

test('lifecycle.json on PostgreSQL: the expected outcomes, all eight codes', () => {
  const seen = new Set()
  for (const c of loadVectors('lifecycle.json').cases) {
    for (const code of runLifecycle(c, pgLocation())) seen.add(code)
  }
  assert.deepEqual([...seen].sort(), ALL_CODES)
})

test('two handles on one PostgreSQL store share keys, revocations and usage', async () => {
  const location = pgLocation()
  const admin = KeyStore.open(location, { refreshIntervalMs: 50 })
  const host = KeyStore.open(location, { refreshIntervalMs: 50 })
  try {
    const { key, info } = admin.create({ name: 'fleet', scopes: ['chat:completions'] })
    for (let i = 0; i < 3; i++) assert.equal(host.verify(key, { scopes: ['chat:completions'] }).code, 'valid')
    host.flush()
    assert.equal(admin.get(info.id).useCount, 3)
    admin.revoke(info.id)
    // 60 s is a hang guard, not a speed claim.
    const code = await poll(() => host.verify(key).code === 'revoked' && 'revoked', { timeoutMs: 60000, intervalMs: 20 })
    assert.equal(code, 'revoked')
  } finally {
    admin.close()
    host.close()
  }
})
