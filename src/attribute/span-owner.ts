// Whose connection end a span is: the service its process names, the container and the pod of
// its socket's cgroup. Interned, so that equal owners are one object with one key: exporters
// group spans and cache resources by that key (export/owner-resource.ts).
import type { SpanOwner } from '../correlate/span-data.js';

/** Owners kept; beyond, the cache starts over (an owner is then made again, with the same key). */
const MAX_OWNERS = 1024;

export interface SpanOwners {
  /** The owner of these three, the same object for the same three; undefined when none is known. Never throws. */
  of(serviceName: string | undefined, containerId: string | undefined, podUid: string | undefined): SpanOwner | undefined;
}

export function createSpanOwners(maxOwners = MAX_OWNERS): SpanOwners {
  return new InternedOwners(maxOwners);
}

/**
 * The key: container id and pod uid (hex digits and dashes, never '/') first, the service name
 * (any text) last, so two different owners never share one.
 */
export function spanOwnerKey(serviceName: string | undefined, containerId: string | undefined, podUid: string | undefined): string {
  return `${containerId ?? ''}/${podUid ?? ''}/${serviceName ?? ''}`;
}

class InternedOwners implements SpanOwners {
  // Nested by container, pod, service ('' when unknown) rather than one map by composed key:
  // a known owner is then three lookups by strings whose hashes are already cached (the
  // attributor's and the process cache's), with no string built per span.
  private readonly _byContainer = new Map<string, Map<string, Map<string, SpanOwner>>>();
  private _size = 0;

  constructor(private readonly _max: number) {}

  of(serviceName: string | undefined, containerId: string | undefined, podUid: string | undefined): SpanOwner | undefined {
    if (serviceName === undefined && containerId === undefined && podUid === undefined) return undefined;
    let byPod = this._byContainer.get(containerId ?? '');
    if (byPod === undefined) this._byContainer.set(containerId ?? '', byPod = new Map());
    let byService = byPod.get(podUid ?? '');
    if (byService === undefined) byPod.set(podUid ?? '', byService = new Map());
    const owner = byService.get(serviceName ?? '');
    return owner ?? this._add(byService, serviceName, containerId, podUid);
  }

  private _add(byService: Map<string, SpanOwner>, serviceName: string | undefined, containerId: string | undefined,
               podUid: string | undefined): SpanOwner {
    if (this._size >= this._max) {
      this._byContainer.clear();
      this._size = 0;
      const byPod = new Map<string, Map<string, SpanOwner>>([[podUid ?? '', byService = new Map()]]);
      this._byContainer.set(containerId ?? '', byPod);
    }
    const owner: SpanOwner = Object.freeze({
      key: spanOwnerKey(serviceName, containerId, podUid),
      ...(serviceName !== undefined && { serviceName }),
      ...(containerId !== undefined && { containerId }),
      ...(podUid !== undefined && { podUid }),
    });
    byService.set(serviceName ?? '', owner);
    this._size++;
    return owner;
  }
}
