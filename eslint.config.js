// Lint of the TypeScript sources. Besides the usual checks it holds the
// architecture: lib/ never imports Node-RED or nodes/, and a lib/ folder imports
// only the folders below it (docs/architecture.md has the picture).
'use strict';
const js = require('@eslint/js');
const tseslint = require('typescript-eslint');

/** What each lib/ folder may import, besides itself and Node's own modules. */
const LAYERS = {
  model: [],
  io: ['model'],
  media: ['model', 'io'],
  store: ['model', 'io'],
  onvif: ['model'],
  peer: ['model', 'io', 'store'],
  link: ['model', 'peer'],
  recorder: ['model', 'io', 'media', 'store'],
  copy: ['model', 'io', 'store', 'peer', 'link'],
  backup: ['model', 'io', 'store', 'link', 'recorder'],
  failover: ['model', 'io', 'media', 'store', 'peer', 'link', 'recorder', 'copy'],
  studio: ['model', 'io', 'media', 'store', 'link', 'recorder'],
};
const FOLDERS = Object.keys(LAYERS);
const NODE_RED = ['node-red', '@node-red/*', 'node-red-node-test-helper'];

const layering = FOLDERS.map((folder) => {
  const denied = FOLDERS.filter((f) => f !== folder && !LAYERS[folder].includes(f));
  return {
    files: [`lib/${folder}/**/*.ts`],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            { group: NODE_RED, message: 'lib/ has no Node-RED import: the node in nodes/ adapts it.' },
            { group: ['**/nodes/**', '../../*'], message: 'lib/ never imports nodes/ or files outside lib/.' },
            ...(denied.length
              ? [
                  {
                    group: denied.map((d) => `../${d}/*`),
                    message: `lib/${folder} may import only ${LAYERS[folder].join(', ') || 'nothing of lib/'} (imports run downward; see docs/architecture.md).`,
                  },
                ]
              : []),
          ],
        },
      ],
    },
  };
});

module.exports = tseslint.config(
  { ignores: ['node_modules/**', '**/*.js', '**/*.d.ts', '.tmp/**', '.demo/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    rules: {
      // the code says `any` where Node-RED's and ajv's types are loose; each use is local
      '@typescript-eslint/no-explicit-any': 'off',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
      // Node-RED's idiom: a node constructor keeps `const node = this` for its handlers
      '@typescript-eslint/no-this-alias': ['error', { allowedNames: ['node', 'self'] }],
      // names from outside are checked for control characters on purpose
      'no-control-regex': 'off',
      // a value set before a try and set again inside it is how this code says the fallback
      'no-useless-assignment': 'off',
    },
  },
  ...layering,
  {
    files: ['nodes/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        { patterns: [{ group: ['../../test/*', '../../bench/*', '../../demo/*'], message: 'nodes/ ship to users: they import lib/ and nodes/shared/ only.' }] },
      ],
    },
  },
);
