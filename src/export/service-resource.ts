// The resource a span is exported under: tcpspan's own, or for a span whose process named its
// service (SpanData.serviceName), tcpspan's with that service.name. Host, OS, SDK and
// OTEL_RESOURCE_ATTRIBUTES attributes stay: they describe where the connection was seen.
// tcpspan's other service.* attributes (version, namespace, instance id) describe tcpspan,
// not the application, so they go.
import { resourceFromAttributes, type Resource } from '@opentelemetry/resources';
import { ATTR_SERVICE_NAME } from '@opentelemetry/semantic-conventions';

/** Services whose resource is kept; beyond, the cache starts over (a request may then hold a service twice, still valid). */
const MAX_SERVICES = 1024;

/** One Resource object per service name, the same object each time: the SDK's serializers group spans by it. */
export type ResourceFor = (serviceName: string | undefined) => Resource;

export function createResourceFor(base: Resource): ResourceFor {
  const kept = Object.fromEntries(Object.entries(base.attributes).filter(([k]) => !k.startsWith('service.')));
  const byService = new Map<string, Resource>();
  return (serviceName) => {
    if (serviceName === undefined) return base;
    let r = byService.get(serviceName);
    if (r === undefined) {
      if (byService.size >= MAX_SERVICES) byService.clear();
      r = resourceFromAttributes({ ...kept, [ATTR_SERVICE_NAME]: serviceName }, base.schemaUrl ? { schemaUrl: base.schemaUrl } : {});
      byService.set(serviceName, r);
    }
    return r;
  };
}
