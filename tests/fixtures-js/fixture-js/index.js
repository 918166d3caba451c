// Test fixture for the end-to-end tests of JavaScript plugins (tests/e2e/js.rs).
import { Router, json, text, kv, caller, config, runtime, billing, BillingError, KilnError } from 'kiln';

// Module state: survives between calls only on a warm instance.
let calls = 0;

export const routes = new Router()
  .get('/js/hello', () => json({ hello: 'js' }))
  .get('/js/calls', () => json({ calls: ++calls }))
  .get('/js/loop', () => {
    for (;;) {}
  })
  .get('/js/hog', () => {
    // Keeps every megabyte it allocates until the memory cap stops it.
    const kept = [];
    for (;;) kept.push(new Uint8Array(1 << 20).fill(1));
  })
  .get('/js/throw', () => {
    throw new Error('kaboom from js');
  })
  .get('/js/not-found', () => {
    throw new KilnError('not-found', 'no such thing');
  })
  .get('/js/fetch', async (req) => {
    const url = req.searchParams.get('url');
    try {
      const res = await fetch(url);
      return json({ status: res.status, body: await res.text() });
    } catch (e) {
      return json({ error: String(e && e.message ? e.message : e) }, { status: 502 });
    }
  })
  .post('/js/fetch', async (req) => {
    const url = req.searchParams.get('url');
    const res = await fetch(url, { method: 'POST', body: req.text(), headers: { 'content-type': 'text/plain' } });
    return json({ status: res.status, body: await res.text() });
  })
  .put('/js/kv/{key}', (req) => {
    kv.set(req.params.key, req.json());
    return null;
  })
  .get('/js/kv/{key}', (req) => {
    const value = kv.getJson(req.params.key);
    if (value === undefined) throw new KilnError('not-found', `no key ${req.params.key}`);
    return json(value);
  })
  .get('/js/whoami', () => json({ caller: caller() }))
  .get('/js/runtime', () => json({ ...runtime.info(), timeLeftMs: runtime.timeLeftMs() }))
  .get('/js/config', () => text(config.get('greeting') ?? 'unset'))
  // Priced by the plugin at 500 micros; charges each of ?charges=a,b,c.
  .get('/js/metered', (req) => {
    const results = (req.searchParams.get('charges') || '').split(',').filter(Boolean).map((c) => {
      try {
        return { total: billing.charge(Number(c), `${c} js units`) };
      } catch (e) {
        if (e instanceof BillingError) return { error: e.kind, held: e.held, charged: e.charged };
        throw e;
      }
    });
    return json({ results, funds: billing.balance() });
  })
  .price(500)
  .get('/js/unpriced-charge', () => {
    try {
      billing.charge(1, 'nothing');
      return json({ charged: true });
    } catch (e) {
      return json({ error: e instanceof BillingError ? e.kind : String(e) });
    }
  });
