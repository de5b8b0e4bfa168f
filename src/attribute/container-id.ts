// Which container and Kubernetes pod a cgroup v2 path belongs to, read from the names that
// container runtimes and the kubelet give their cgroups. Pure: a path in, ids out.
//
// | layout                              | example path (segments that matter)                                        |
// |-------------------------------------|-----------------------------------------------------------------------------|
// | Docker, systemd driver              | /system.slice/docker-<64hex>.scope                                          |
// | Docker, cgroupfs driver             | /docker/<64hex>                                                             |
// | containerd (CRI), systemd driver    | /kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod<uid_>.slice/cri-containerd-<64hex>.scope |
// | containerd (CRI), cgroupfs driver   | /kubepods/besteffort/pod<uid>/<64hex>  (guaranteed pods: /kubepods/pod<uid>/<64hex>) |
// | CRI-O                               | .../crio-<64hex>.scope (crio-conmon-<64hex>.scope is its monitor, not a container) |
// | Podman                              | /machine.slice/libpod-<64hex>.scope (libpod-conmon-: its monitor)             |
//
// A pod's uid is a UUID (systemd slices write its dashes as underscores) or, for a static
// pod, 32 hex digits. The innermost container segment wins (a container inside a container).

export interface CgroupAttribution {
  /** container.id: the runtime's 64-hex-digit container id */
  readonly containerId?: string;
  /** k8s.pod.uid, with dashes */
  readonly podUid?: string;
}

const HEX64 = '[0-9a-f]{64}';
const UID = '[0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12}|[0-9a-f]{32}';

/** docker-, cri-containerd-, crio-, libpod- <id>, .scope under systemd; crio-conmon- and libpod-conmon- do not match */
const RUNTIME_SCOPE = new RegExp(`^(?:docker|cri-containerd|crio|libpod)-(${HEX64})(?:\\.scope)?$`);
/** a bare id: cgroupfs layouts, under /docker or under a pod's cgroup */
const BARE_ID = new RegExp(`^${HEX64}$`);
/** kubepods-pod<uid>.slice, kubepods-burstable-pod<uid>.slice, kubepods-besteffort-pod<uid>.slice */
const POD_SLICE = new RegExp(`^kubepods(?:-[a-z]+)?-pod(${UID})\\.slice$`);
/** cgroupfs: pod<uid>, below a kubepods segment */
const POD_DIR = new RegExp(`^pod(${UID})$`);

const NONE: CgroupAttribution = Object.freeze({});

/** The container and pod of a cgroup path ('/'-separated, from the hierarchy's root); {} when it names neither. */
export function parseCgroupPath(path: string): CgroupAttribution {
  let containerId: string | undefined;
  let podUid: string | undefined;
  let inKubepods = false;
  let parentIsPod = false;
  let parent = '';
  for (const seg of path.split('/')) {
    if (seg === '') continue;
    let isPod = false;
    let m: RegExpExecArray | null;
    if ((m = RUNTIME_SCOPE.exec(seg)) !== null) {
      containerId = m[1];
    } else if (BARE_ID.test(seg) && (parent === 'docker' || parentIsPod)) {
      containerId = seg;
    } else if ((m = POD_SLICE.exec(seg)) !== null) {
      podUid = podUidOf(m[1]!);
      isPod = true;
    } else if (inKubepods && (m = POD_DIR.exec(seg)) !== null) {
      podUid = podUidOf(m[1]!);
      isPod = true;
    }
    if (seg === 'kubepods' || seg.startsWith('kubepods.') || seg.startsWith('kubepods-')) inKubepods = true;
    parentIsPod = isPod;
    parent = seg;
  }
  if (containerId === undefined && podUid === undefined) return NONE;
  return { ...(containerId !== undefined && { containerId }), ...(podUid !== undefined && { podUid }) };
}

/** systemd slices cannot hold dashes in a unit name's part: the kubelet writes them as underscores. */
function podUidOf(raw: string): string {
  return raw.replace(/_/g, '-');
}
