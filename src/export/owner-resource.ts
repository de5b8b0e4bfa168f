// The resource a span is exported under: tcpspan's own, or for a span with an owner (an
// application's connection end, attribute/span-owner.ts), tcpspan's with the owner's
// service.name, container.id and k8s.pod.uid, those known. Host, OS, SDK and
// OTEL_RESOURCE_ATTRIBUTES attributes stay: they describe where the connection was seen.
// tcpspan's other service.* attributes (version, namespace, instance id) describe tcpspan,
// not the application, so they go when the owner names a service; tcpspan's own container.id
// and k8s.pod.uid (set through OTEL_RESOURCE_ATTRIBUTES) always go: the Collector's
// k8s_attributes processor would file the application's span under tcpspan's pod.
import { resourceFromAttributes, type Resource } from '@opentelemetry/resources';
import type { Attributes } from '@opentelemetry/api';
import { ATTR_SERVICE_NAME } from '@opentelemetry/semantic-conventions';
import { ATTR_CONTAINER_ID, ATTR_K8S_POD_UID } from '../correlate/semconv.js';
import type { SpanOwner } from '../correlate/span-data.js';

/** Owners whose resource is kept; beyond, the cache starts over (a request may then hold an owner twice, still valid). */
const MAX_OWNERS = 1024;

/** One Resource object per owner key, the same object each time: the SDK's serializers group spans by it. */
export type ResourceFor = (owner: SpanOwner | undefined) => Resource;

export function createResourceFor(base: Resource): ResourceFor {
  const entries = Object.entries(base.attributes).filter(([k]) => k !== ATTR_CONTAINER_ID && k !== ATTR_K8S_POD_UID);
  const withTcpspanService = Object.fromEntries(entries);
  const withoutService = Object.fromEntries(entries.filter(([k]) => !k.startsWith('service.')));
  const options = base.schemaUrl ? { schemaUrl: base.schemaUrl } : {};
  const byOwner = new Map<string, Resource>();
  return (owner) => {
    if (owner === undefined) return base;
    let r = byOwner.get(owner.key);
    if (r === undefined) {
      if (byOwner.size >= MAX_OWNERS) byOwner.clear();
      const attrs: Attributes = owner.serviceName === undefined
        ? { ...withTcpspanService }
        : { ...withoutService, [ATTR_SERVICE_NAME]: owner.serviceName };
      if (owner.containerId !== undefined) attrs[ATTR_CONTAINER_ID] = owner.containerId;
      if (owner.podUid !== undefined) attrs[ATTR_K8S_POD_UID] = owner.podUid;
      r = resourceFromAttributes(attrs, options);
      byOwner.set(owner.key, r);
    }
    return r;
  };
}
