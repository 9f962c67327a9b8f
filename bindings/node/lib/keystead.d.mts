// Types of the ESM entry point (lib/keystead.mjs): the same module as lib/keystead.d.ts.
import keystead from './keystead.js'

export * from './keystead.js'
export default keystead
