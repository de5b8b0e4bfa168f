// Span owners are interned: the exporters group spans and cache resources by them.
import assert from 'node:assert/strict';
import { createSpanOwners, spanOwnerKey } from '../src/attribute/span-owner.js';

const CID = 'c'.repeat(64);
const UID = '5e2b1f6c-0d3a-4b8e-9c7f-1a2b3c4d5e6f';

describe('createSpanOwners', () => {
  it('should give no owner when nothing is known, and whole owners otherwise', () => {
    const owners = createSpanOwners();
    assert.equal(owners.of(undefined, undefined, undefined), undefined);
    assert.deepStrictEqual(owners.of('checkout', CID, UID), { key: `${CID}/${UID}/checkout`, serviceName: 'checkout', containerId: CID, podUid: UID });
    assert.deepStrictEqual(owners.of(undefined, CID, undefined), { key: `${CID}//`, containerId: CID });
    assert.deepStrictEqual(owners.of(undefined, undefined, UID), { key: `/${UID}/`, podUid: UID });
    assert.deepStrictEqual(owners.of('checkout', undefined, undefined), { key: '//checkout', serviceName: 'checkout' });
  });

  it('should hand out one object per owner, built from strings made anew', () => {
    const owners = createSpanOwners();
    const a = owners.of('checkout', CID, UID);
    assert.equal(owners.of(`check${'out'}`, 'c'.repeat(64), `${UID}`), a);
    assert.ok(Object.isFrozen(a));
    assert.notEqual(owners.of('checkout', CID, undefined), a);
    assert.notEqual(owners.of(undefined, CID, UID), a);
  });

  it('should give different owners different keys, whatever their service is named', () => {
    const triples: [string | undefined, string | undefined, string | undefined][] = [
      ['a', undefined, undefined], [undefined, 'a', undefined], [undefined, undefined, 'a'], ['/a', undefined, undefined],
      [`${CID}/`, undefined, undefined], ['', undefined, undefined], ['x/y', CID, UID], ['y', CID, UID], [undefined, CID, UID],
    ];
    const keys = triples.map((t) => spanOwnerKey(...t));
    assert.equal(new Set(keys).size, keys.length);
  });

  it('should start over beyond its bound, making equal owners again with the same key', () => {
    const owners = createSpanOwners(3);
    const first = ['a', 'b', 'c'].map((s) => owners.of(s, CID, undefined)!);
    assert.equal(owners.of('a', CID, undefined), first[0]);
    const d = owners.of('d', CID, undefined)!; // the fourth: the cache starts over
    assert.equal(owners.of('d', CID, undefined), d, 'the owner that started it over is kept');
    const a = owners.of('a', CID, undefined)!;
    assert.notEqual(a, first[0]);
    assert.equal(a.key, first[0]!.key);
  });
});
