'use strict'
// A worker_threads worker: opens its own handle on the store file and verifies keys.
const { parentPort, workerData } = require('node:worker_threads')
const { KeyStore } = require('../..')

const { path, keys, rounds, scope } = workerData
const store = KeyStore.open(path)
const valid = {}
const codes = {}
for (let round = 0; round < rounds; round++) {
  for (const { id, key } of keys) {
    const check = store.verifyHeader(`Bearer ${key}`, { scopes: [scope] })
    codes[check.code] = (codes[check.code] || 0) + 1
    if (check.ok) valid[id] = (valid[id] || 0) + 1
  }
}
// A wrong key in the mix must be refused, not thrown. Its last (checksum) character is
// replaced by a different one, so the checksum fails whatever the key (replacing it with a
// fixed character left the key valid when it already ended in that character: 1 run in 62).
const last = keys[0].key.slice(-1)
const wrong = store.verify(`${keys[0].key.slice(0, -1)}${last === 'x' ? 'y' : 'x'}`).code
store.close()
parentPort.postMessage({ valid, codes, wrong })
