// What protocol identification adds to a span: a few attributes, never payload.
import type { AttributeValue } from '../correlate/connection-record.js';

export type ProtocolAttributes = Record<string, AttributeValue>;
