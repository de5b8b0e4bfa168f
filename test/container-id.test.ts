// The cgroup path parser: every layout container runtimes and the kubelet write, and paths that only look like them.
import assert from 'node:assert/strict';
import { parseCgroupPath } from '../src/attribute/container-id.js';

const ID = '3f4e2d1c0b9a8f7e6d5c4b3a29180f1e2d3c4b5a69788f7e6d5c4b3a2918f0e1';
const ID2 = 'a'.repeat(64);
const UID = '5e2b1f6c-0d3a-4b8e-9c7f-1a2b3c4d5e6f';
const UID_ = UID.replace(/-/g, '_');
const STATIC_UID = '0123456789abcdef0123456789abcdef'; // a static pod: the hash of its manifest

describe('parseCgroupPath', () => {
  const layouts: [string, string, ReturnType<typeof parseCgroupPath>][] = [
    ['Docker, systemd driver', `/system.slice/docker-${ID}.scope`, { containerId: ID }],
    ['Docker, cgroupfs driver', `/docker/${ID}`, { containerId: ID }],
    ['Docker in Docker (the inner container wins)', `/docker/${ID2}/docker/${ID}`, { containerId: ID }],
    ['containerd (CRI), systemd driver', `/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${UID_}.slice/cri-containerd-${ID}.scope`,
      { containerId: ID, podUid: UID }],
    ['containerd (CRI), systemd driver, burstable', `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${UID_}.slice/cri-containerd-${ID}.scope`,
      { containerId: ID, podUid: UID }],
    ['containerd (CRI), systemd driver, guaranteed', `/kubepods.slice/kubepods-pod${UID_}.slice/cri-containerd-${ID}.scope`,
      { containerId: ID, podUid: UID }],
    ['containerd (CRI), cgroupfs driver', `/kubepods/besteffort/pod${UID}/${ID}`, { containerId: ID, podUid: UID }],
    ['containerd (CRI), cgroupfs driver, guaranteed', `/kubepods/pod${UID}/${ID}`, { containerId: ID, podUid: UID }],
    ['CRI-O, systemd driver', `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${UID_}.slice/crio-${ID}.scope`,
      { containerId: ID, podUid: UID }],
    ['CRI-O, cgroupfs driver', `/kubepods/burstable/pod${UID}/crio-${ID}`, { containerId: ID, podUid: UID }],
    ['Docker under the kubelet (dockershim), systemd driver', `/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${UID_}.slice/docker-${ID}.scope`,
      { containerId: ID, podUid: UID }],
    ['a static pod (32 hex digits)', `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${STATIC_UID}.slice/cri-containerd-${ID}.scope`,
      { containerId: ID, podUid: STATIC_UID }],
    ['Podman', `/machine.slice/libpod-${ID}.scope`, { containerId: ID }],
    ['a process in a sub-cgroup of a container', `/system.slice/docker-${ID}.scope/init.scope`, { containerId: ID }],
    ['a pod cgroup itself (no container)', `/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${UID_}.slice`, { podUid: UID }],
    ['a path seen from a cgroup namespace root above it', `/../../kubepods/besteffort/pod${UID}/${ID}`, { containerId: ID, podUid: UID }],
  ];
  for (const [name, path, want] of layouts) {
    it(`should read ${name}`, () => {
      assert.deepEqual(parseCgroupPath(path), want);
    });
  }

  const negatives: [string, string][] = [
    ['the root', '/'],
    ['an empty path', ''],
    ['a systemd service', '/system.slice/ssh.service'],
    ['a user session', '/user.slice/user-1000.slice/session-3.scope'],
    ['the kubepods slices above any pod', '/kubepods.slice/kubepods-besteffort.slice'],
    ['CRI-O\'s monitor (conmon), not a container', `/kubepods.slice/kubepods-burstable.slice/crio-conmon-${ID}.scope`],
    ['Podman\'s monitor (conmon)', `/machine.slice/libpod-conmon-${ID}.scope`],
    ['a 64-hex directory outside docker and pods', `/system.slice/${ID}`],
    ['a pod-like directory outside kubepods', `/user.slice/pod${UID}/${ID}`],
    ['an id one digit short', `/system.slice/docker-${ID.slice(1)}.scope`],
    ['an id in upper case', `/system.slice/docker-${ID.toUpperCase()}.scope`],
    ['a runtime name that only starts like one', `/system.slice/dockerd-${ID}.scope`],
    ['a malformed pod uid', `/kubepods.slice/kubepods-besteffort-pod${UID_.slice(2)}.slice`],
  ];
  for (const [name, path] of negatives) {
    it(`should find nothing in ${name}`, () => {
      assert.deepEqual(parseCgroupPath(path), {});
    });
  }
});
