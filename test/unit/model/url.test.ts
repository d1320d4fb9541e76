/** lib/model/url: the login of a stream or broker URL found as the WHATWG URL parser finds it, the rest kept as written. */
import assert from 'node:assert/strict';
import { loginOf, redactUrl, stripLogin, withLogin } from '../../../lib/model/url';

describe('URL logins (lib/model/url)', () => {
  it('redactUrl hides the password and keeps the user name and the rest as written', () => {
    assert.equal(
      redactUrl('rtsp://admin:secret@10.0.0.7:554/Streaming/Channels/101?transportmode=unicast'),
      'rtsp://admin:***@10.0.0.7:554/Streaming/Channels/101?transportmode=unicast',
    );
    assert.equal(redactUrl('mqtts://site:pw@broker.local:8883'), 'mqtts://site:***@broker.local:8883');
    assert.equal(redactUrl('rtsp://10.0.0.7/live'), 'rtsp://10.0.0.7/live');
    assert.equal(redactUrl('rtsp://viewer@10.0.0.7/live'), 'rtsp://viewer@10.0.0.7/live');
    assert.equal(redactUrl('TESTPATTERN'), 'TESTPATTERN');
  });

  it('a password with an @ in it is hidden whole (the userinfo ends at the last @ of the authority)', () => {
    const url = 'rtsp://op:p@ss@w0rd@cam.local:554/main';
    assert.equal(new URL(url).host, 'cam.local:554', 'the WHATWG parser agrees on the host');
    assert.equal(redactUrl(url), 'rtsp://op:***@cam.local:554/main');
    assert.deepEqual(stripLogin(url), { url: 'rtsp://cam.local:554/main', login: true });
    assert.deepEqual(loginOf(url), { username: 'op', password: 'p@ss@w0rd' });
  });

  it('an @ after the authority (in the path or the query) is not a login', () => {
    assert.equal(redactUrl('rtsp://cam.local/live?user=a@b:c'), 'rtsp://cam.local/live?user=a@b:c');
    assert.deepEqual(stripLogin('rtsp://cam.local/a@b'), { url: 'rtsp://cam.local/a@b', login: false });
    assert.equal(loginOf('rtsp://cam.local/a@b'), null);
  });

  it('loginOf decodes the parts, and is null for a URL without a login or one that does not parse', () => {
    assert.deepEqual(loginOf('rtsp://a%20b%40c:p%40ss%3Aw%2Frd@cam/x'), { username: 'a b@c', password: 'p@ss:w/rd' });
    assert.equal(loginOf('rtsp://cam/x'), null);
    assert.equal(loginOf('not a url'), null);
  });

  it('withLogin round-trips with loginOf, and keeps a URL that has a login of its own', () => {
    const login = { username: 'a b@c', password: 'p@ss:w/rd' };
    const url = withLogin('rtsp://cam:554/x?y=1', login);
    assert.equal(url, 'rtsp://a%20b%40c:p%40ss%3Aw%2Frd@cam:554/x?y=1');
    assert.deepEqual(loginOf(url), login);
    assert.equal(redactUrl(url), 'rtsp://a%20b%40c:***@cam:554/x?y=1');
    assert.equal(withLogin('rtsp://other:pw@cam/x', login), 'rtsp://other:pw@cam/x');
    assert.equal(withLogin('not a url', login), 'not a url');
  });
});
