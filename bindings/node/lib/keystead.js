'use strict'
// The package's entry point (`require('keystead')`): everything the generated napi-rs loader
// (../index.js) exports, plus the framework drop-ins. lib/keystead.mjs is the ESM face of this
// same module, so `import` and `require` share one addon and one KeyStore class.
const native = require('../index.js')

module.exports = Object.assign({}, native, {
  express: require('./express'),
  fastify: require('./fastify'),
})
