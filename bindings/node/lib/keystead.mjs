// The package's ESM entry point (`import ... from 'keystead'`): the CommonJS module
// lib/keystead.js itself, so both module systems share one addon and one KeyStore class.
import keystead from './keystead.js'

export const { KeyStore, __napiBindingTarget, express, fastify } = keystead
export default keystead
