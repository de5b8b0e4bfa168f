// The resource each span is exported under: tcpspan's, or tcpspan's with its owner's attributes.
import assert from 'node:assert/strict';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { createSpanOwners } from '../src/attribute/span-owner.js';
import { createResourceFor } from '../src/export/owner-resource.js';

const CID = 'c'.repeat(64);
const UID = '5e2b1f6c-0d3a-4b8e-9c7f-1a2b3c4d5e6f';
// tcpspan's own pod and container, as a DaemonSet could set them through OTEL_RESOURCE_ATTRIBUTES
const BASE = resourceFromAttributes({
  'service.name': 'tcpspan', 'service.version': '0.1.0', 'host.name': 'node-1',
  'k8s.pod.uid': '0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0', 'container.id': 'd'.repeat(64),
}, { schemaUrl: 'https://opentelemetry.io/schemas/1.38.0' });

describe('createResourceFor', () => {
  const owners = createSpanOwners();

  it('should give tcpspan\'s own resource to spans without an owner', () => {
    assert.equal(createResourceFor(BASE)(undefined), BASE);
  });

  it('should put the owner\'s service.name, container.id and k8s.pod.uid on tcpspan\'s resource, never tcpspan\'s ids', () => {
    const resourceFor = createResourceFor(BASE);
    const attributes = (s?: string, c?: string, p?: string) => resourceFor(owners.of(s, c, p)).attributes;
    // a service named: tcpspan's service.* go
    assert.deepStrictEqual(attributes('checkout', CID, UID), { 'host.name': 'node-1', 'service.name': 'checkout', 'container.id': CID, 'k8s.pod.uid': UID });
    assert.deepStrictEqual(attributes('checkout'), { 'host.name': 'node-1', 'service.name': 'checkout' });
    // none named: tcpspan's service stays
    assert.deepStrictEqual(attributes(undefined, CID), { 'service.name': 'tcpspan', 'service.version': '0.1.0', 'host.name': 'node-1', 'container.id': CID });
    assert.deepStrictEqual(attributes(undefined, undefined, UID), { 'service.name': 'tcpspan', 'service.version': '0.1.0', 'host.name': 'node-1', 'k8s.pod.uid': UID });
    assert.equal(resourceFor(owners.of(undefined, CID, undefined)).schemaUrl, BASE.schemaUrl);
  });

  it('should return the same object for the same owner key, even for an owner made again', () => {
    const resourceFor = createResourceFor(BASE);
    const r = resourceFor(owners.of('cart', CID, UID));
    assert.equal(resourceFor(owners.of('cart', CID, UID)), r);
    assert.equal(resourceFor(createSpanOwners().of('cart', CID, UID)), r);
    assert.notEqual(resourceFor(owners.of('cart', CID, undefined)), r);
  });
});
