/** eslint.config.js holds the architecture: lib/ never imports Node-RED or nodes/, and a lib/ folder only the folders below it. */
import assert from 'node:assert/strict';
import path from 'node:path';
import { ESLint } from 'eslint';

const ROOT = path.join(__dirname, '..', '..');

async function problems(file: string, code: string): Promise<string[]> {
  const eslint = new ESLint({ cwd: ROOT });
  const [r] = await eslint.lintText(code, { filePath: path.join(ROOT, file) });
  return r.messages.filter((m) => m.ruleId === 'no-restricted-imports').map((m) => m.message);
}

describe('the layering rule (eslint.config.js)', function () {
  this.timeout(60000);

  it('refuses an import from a folder above, and says which it may import', async () => {
    const p = await problems('lib/model/x.ts', "import type { ChannelEvent } from '../recorder/types';\nexport type T = ChannelEvent;\n");
    assert.equal(p.length, 1);
    assert.match(p[0], /lib\/model may import only nothing of lib\//);
    const q = await problems(
      'lib/recorder/x.ts',
      "import { Backoff } from '../model/backoff';\nimport { PeerClient } from '../peer/client';\nexport const x = [Backoff, PeerClient];\n",
    );
    assert.equal(q.length, 1, 'the model import is allowed, the peer one is not');
    assert.match(q[0], /lib\/recorder may import only model, io, media, store/);
  });

  it('refuses Node-RED and nodes/ anywhere in lib/', async () => {
    assert.match((await problems('lib/copy/x.ts', "import type { NodeAPI } from 'node-red';\nexport type T = NodeAPI;\n"))[0], /no Node-RED import/);
    assert.match(
      (await problems('lib/failover/x.ts', "import { recorderChannels } from '../../nodes/shared/registry';\nexport const r = recorderChannels;\n"))[0],
      /never imports nodes\//,
    );
  });

  it('lets a folder import the ones below it, and nodes/ import lib/', async () => {
    assert.deepEqual(
      await problems(
        'lib/failover/x.ts',
        "import { copyRequestOf } from '../copy/copy-request';\nimport type { ChannelEvent } from '../recorder/types';\nexport const x = copyRequestOf;\nexport type T = ChannelEvent;\n",
      ),
      [],
    );
    assert.deepEqual(
      await problems('nodes/recorder/x.ts', "import { RecorderChannel } from '../../lib/recorder/channel';\nexport const x = RecorderChannel;\n"),
      [],
    );
  });
});
