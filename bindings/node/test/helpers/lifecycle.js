'use strict'
const assert = require('node:assert/strict')

const { KeyStore } = require('../..')
const { tempStorePath } = require('./common')

// Runs one script of lifecycle.json on a new store at `location` (a file by default); returns
// the outcome codes it reached. Shared by vectors.test.js and postgres.test.js.
function runLifecycle(c, location = tempStorePath()) {
  const store = KeyStore.open(location, { prefix: 'ks' })
  const seen = new Set()
  const keys = {} // name -> { key, id }
  try {
    c.steps.forEach((step, i) => {
      const at = `${c.name}, step ${i}`
      const id = () => keys[step.key].id
      switch (step.op) {
        case 'create': {
          const created = store.create({ name: step.name, scopes: step.scopes })
          keys[step.as] = { key: created.key, id: created.info.id }
          break
        }
        case 'disable':
        case 'enable':
        case 'revoke':
        case 'delete':
          store[step.op](id())
          break
        case 'set_scopes':
          store.setScopes(id(), step.scopes)
          break
        case 'rotate': {
          const rotated = store.rotate(id(), { graceMs: step.grace_ms })
          keys[step.as] = { key: rotated.key, id: rotated.info.id }
          break
        }
        case 'verify':
        case 'verify_header': {
          let check
          if (step.op === 'verify') {
            const presented = step.raw !== undefined ? step.raw : keys[step.key].key
            check = store.verify(presented, { scopes: step.scopes })
          } else {
            let header = step.header
            for (const [name, { key }] of Object.entries(keys)) header = header.replaceAll(`{${name}}`, key)
            check = store.verifyHeader(header, { scopes: step.scopes })
          }
          assert.equal(check.code, step.expect.code, at)
          assert.equal(check.httpStatus, step.expect.http_status, at)
          assert.equal(check.wwwAuthenticate, step.expect.www_authenticate, at)
          assert.equal(check.ok, step.expect.code === 'valid', at)
          seen.add(check.code)
          break
        }
        default:
          assert.fail(`${at}: unknown op ${step.op}`)
      }
    })
  } finally {
    store.close()
  }
  return seen
}

/** Every outcome code, sorted: the lifecycle vectors together must reach each one. */
const ALL_CODES = [
  'disabled',
  'expired',
  'insufficient_scope',
  'malformed',
  'missing',
  'not_found',
  'revoked',
  'valid',
]

module.exports = { runLifecycle, ALL_CODES }
