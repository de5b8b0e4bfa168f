import assert from 'node:assert/strict';
import { libbpf } from '../src/capture/libbpf.js';
import { structLayout } from '../src/capture/btf.js';
import { DEFAULT_OBJECT_PATH } from '../src/capture/probes.js';
import { compareLayout, CONN_LAYOUT, EVENT_LAYOUT, WIRE_STRUCTS } from '../src/decode/wire-layout.js';

describe('wire layout', () => {
  it('should match the BTF of the compiled BPF object, struct by struct', () => {
    const obj = libbpf.openFile(DEFAULT_OBJECT_PATH);
    assert.ok(obj, `cannot open ${DEFAULT_OBJECT_PATH}`);
    try {
      const btf = libbpf.objectBtf(obj)!;
      for (const [name, spec] of Object.entries(WIRE_STRUCTS)) {
        const actual = structLayout(btf, name);
        assert.deepEqual(compareLayout(spec, actual, name), [], name);
        // and the object has no field the decoder does not know (padding aside)
        const unknown = Object.keys(actual!.members).filter((m) => !(m in spec.fields) && !m.startsWith('_'));
        assert.deepEqual(unknown, [], `${name} has fields the decoder ignores`);
      }
    } finally {
      libbpf.close(obj);
    }
  });

  it('should lay the connection record out with no holes, its 64-bit fields (cgroup_id among them) 8-byte aligned', () => {
    const obj = libbpf.openFile(DEFAULT_OBJECT_PATH);
    assert.ok(obj, `cannot open ${DEFAULT_OBJECT_PATH}`);
    try {
      const actual = structLayout(libbpf.objectBtf(obj)!, 'tcpspan_conn')!;
      const members = Object.entries(actual.members).sort(([, a], [, b]) => a.offset - b.offset);
      let end = 0;
      for (const [name, m] of members) {
        assert.equal(m.offset, end, `a hole before tcpspan_conn.${name}`);
        end = m.offset + m.size;
      }
      assert.equal(end, actual.size, 'no tail padding');
      assert.deepEqual(CONN_LAYOUT.fields.cgroup_id, { offset: 160, size: 8 });
      assert.equal(CONN_LAYOUT.size % 8, 0, 'records stay 8-byte aligned in the ring');
    } finally {
      libbpf.close(obj);
    }
  });

  it('should report a field that moved or changed size', () => {
    const moved = { name: 'tcpspan_event', size: EVENT_LAYOUT.size, members: Object.fromEntries(Object.entries(EVENT_LAYOUT.fields).map(([k, v]) => [k, { ...v }])) };
    moved.members['seq'] = { offset: 80, size: 4 };
    moved.members['segs'] = { offset: 80, size: 4 };
    assert.deepEqual(compareLayout(EVENT_LAYOUT, moved, 'tcpspan_event'), [
      'tcpspan_event.seq is at 80 (+4) in the object, 76 (+4) in the decoder',
      'tcpspan_event.segs is at 80 (+4) in the object, 80 (+2) in the decoder',
    ]);
    assert.deepEqual(compareLayout(EVENT_LAYOUT, undefined, 'tcpspan_event'), ['struct tcpspan_event is missing from the object\'s BTF']);
  });
});
