'use strict'
// Shared by the tests: temporary stores, the shared vectors, polling.
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const repoRoot = path.resolve(__dirname, '..', '..', '..', '..')
const vectorsDir = path.join(repoRoot, 'tests', 'vectors')

function loadVectors(name) {
  return JSON.parse(fs.readFileSync(path.join(vectorsDir, name), 'utf8'))
}

const tempDirs = []
process.on('exit', () => {
  for (const dir of tempDirs) fs.rmSync(dir, { recursive: true, force: true })
})

/** A fresh directory, removed when the test process exits. */
function tempDir() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'keystead-node-'))
  tempDirs.push(dir)
  return dir
}

function tempStorePath(name = 'keystead.redb') {
  return path.join(tempDir(), name)
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * Polls `check` until it returns a truthy value or `timeoutMs` passes (then returns the last
 * value). Changes made by other processes are seen after core's refresh interval (1 s by
 * default), so cross-process assertions poll instead of assuming instant visibility.
 */
async function poll(check, { timeoutMs = 5000, intervalMs = 50 } = {}) {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await check()
    if (value || Date.now() >= deadline) return value
    await sleep(intervalMs)
  }
}

module.exports = { repoRoot, vectorsDir, loadVectors, tempDir, tempStorePath, sleep, poll }
