// What payload records (inspect.*) add to a tracked connection end: links to the span
// contexts of the HTTP/1.x requests it carried, and what its first bytes say about the
// protocol. Parsed while the record is handled: only the results are kept, never bytes.
import { PayloadDir, PayloadWhat, type KernelEvent } from '../decode/event.js';
import { identifyFromClient, identifyFromServer, type ProtocolAttributes } from '../inspect/protocol.js';
import { findTraceparent, type SpanLinkData } from '../inspect/traceparent.js';
import { CLIENT, SERVER, type Conn } from './conn.js';

/** Kept only on ends that had payload records: an end without any pays one empty field. */
export class ConnInspect {
  links: SpanLinkData[] = [];
  /** requests whose link was over maxLinksPerSpan */
  droppedLinks = 0;
  /** sequence number of the last request seen each way (egress, ingress): a retransmit repeats it */
  lastSeqOut = -1;
  lastSeqIn = -1;
  fromClient: ProtocolAttributes | undefined;
  fromServer: ProtocolAttributes | undefined;
}

/** Takes a payload record of this end. */
export function applyPayload(c: Conn, e: KernelEvent, maxLinks: number): void {
  const x = (c.inspect ??= new ConnInspect());
  const out = e.payloadDir === PayloadDir.Egress;
  if ((e.payloadWhat & PayloadWhat.First) !== 0 && c.kind !== 0) {
    // the first bytes of a life whose opening was seen (an end open before tcpspan started
    // would show the middle of a stream); which way is the client's depends on the end
    if (out === (c.kind === CLIENT)) x.fromClient ??= identifyFromClient(e.payload);
    else if (c.kind === SERVER || c.kind === CLIENT) x.fromServer ??= identifyFromServer(e.payload);
  }
  if ((e.payloadWhat & PayloadWhat.Request) !== 0) {
    // a retransmitted segment is seen again, with the same sequence number
    if (out ? x.lastSeqOut === e.seq : x.lastSeqIn === e.seq) return;
    if (out) x.lastSeqOut = e.seq;
    else x.lastSeqIn = e.seq;
    const link = findTraceparent(e.payload);
    if (link === undefined) return;
    if (x.links.length < maxLinks) x.links.push(link);
    else x.droppedLinks++;
  }
}

/** The protocol attributes of an end: what the client's first bytes say, else the server's. */
export function protocolOf(x: ConnInspect): ProtocolAttributes | undefined {
  return x.fromClient ?? x.fromServer;
}
