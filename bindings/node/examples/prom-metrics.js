'use strict'
// keystead's counters as Prometheus metrics, through prom-client.
//
// Each metric's `collect` reads `store.stats()` when the registry is scraped, so the verify
// path does no extra work and nothing is counted twice. In a server:
//
//   const client = require('prom-client')
//   registerKeysteadMetrics(store, client.register)
//   app.get('/metrics', async (req, res) => {
//     res.set('Content-Type', client.register.contentType).send(await client.register.metrics())
//   })
//
// Run this file to print one scrape of a small demonstration store:  node examples/prom-metrics.js
const client = require('prom-client')
const { KeyStore } = require('..') // in an application: require('keystead')

// [stats field, metric name, help]: counters (prom-client names them as given)
const COUNTERS = [
  ['verifyErrors', 'keystead_verify_errors_total', 'Verify calls that threw instead of answering.'],
  ['cacheHits', 'keystead_cache_hits_total', 'Verifications answered without reading a key record.'],
  ['cacheMisses', 'keystead_cache_misses_total', 'Verifications that read a key record.'],
  ['refreshes', 'keystead_refreshes_total', "Reads of the store's change feed."],
  ['refreshFailures', 'keystead_refresh_failures_total', 'Change-feed reads that failed.'],
  ['flushes', 'keystead_flushes_total', 'Batches of usage counts written to the store.'],
  ['flushFailures', 'keystead_flush_failures_total', 'Usage writes that failed (retried).'],
]
const GAUGES = [
  ['usagePending', 'keystead_usage_pending', 'Uses counted in memory, not yet written.'],
  ['cachedKeys', 'keystead_cached_keys', 'Keys in the verify cache.'],
]

/** Registers keystead's metrics for one store handle in `registry`. */
function registerKeysteadMetrics(store, registry = client.register) {
  const registers = [registry]
  new client.Counter({
    name: 'keystead_verifications_total',
    help: 'Verifications by outcome.',
    labelNames: ['outcome'],
    registers,
    collect() {
      this.reset()
      for (const [outcome, count] of Object.entries(store.stats().outcomes)) {
        this.labels({ outcome }).inc(count)
      }
    },
  })
  for (const [field, name, help] of COUNTERS) {
    new client.Counter({
      name,
      help,
      registers,
      collect() {
        this.reset()
        this.inc(store.stats()[field])
      },
    })
  }
  for (const [field, name, help] of GAUGES) {
    new client.Gauge({
      name,
      help,
      registers,
      collect() {
        this.set(store.stats()[field])
      },
    })
  }
  new client.Gauge({
    name: 'keystead_last_refresh_age_seconds',
    help: 'Seconds since the verify path last read the change feed successfully.',
    registers,
    collect() {
      const age = store.stats().lastRefreshAgeMs
      // Before the first refresh there is no value: the sample is left out.
      if (age === null) this.reset()
      else this.set(age / 1000)
    },
  })
}

module.exports = { registerKeysteadMetrics }

if (require.main === module) {
  const store = KeyStore.open('memory:')
  const { key } = store.create({ name: 'demo', scopes: ['chat:completions'] })
  store.verify(key, { scopes: ['chat:completions'] })
  store.verifyHeader('Bearer not-a-key')
  const registry = new client.Registry()
  registerKeysteadMetrics(store, registry)
  registry.metrics().then((text) => {
    process.stdout.write(text)
    store.close()
  })
}
