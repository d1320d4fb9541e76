/**
 * The points of a Modbus GPIO device (coils, discrete inputs, registers and
 * bits of registers): checking one, its key, and the reads that cover a set
 * of them. Pure; lib/studio/gpio-device.ts polls with these.
 */
export type GpioArea = 'coil' | 'discrete' | 'holding' | 'input';
export const GPIO_AREAS: readonly GpioArea[] = ['coil', 'discrete', 'holding', 'input'];

/** A watched point: one coil / discrete input, or one register (optionally one bit of it). */
export interface GpioPoint {
  area: GpioArea;
  address: number;
  /** For registers: the bit 0..15 to watch as a boolean; absent = the whole register value. */
  bit?: number;
}

export type PointValue = boolean | number;
export type PointListener = (value: PointValue, at: number) => void;

const MAX_BITS_PER_READ = 2000;
const MAX_REGS_PER_READ = 125;
export const MAX_ADDRESS = 65535;

export function validPoint(p: GpioPoint): string | null {
  if (!GPIO_AREAS.includes(p.area)) return `unknown area "${String(p.area)}" (coil, discrete, holding or input)`;
  if (!Number.isInteger(p.address) || p.address < 0 || p.address > MAX_ADDRESS) return `address ${String(p.address)} is not 0..65535`;
  if (p.bit !== undefined) {
    if (p.area === 'coil' || p.area === 'discrete') return 'a bit is only for registers (holding or input)';
    if (!Number.isInteger(p.bit) || p.bit < 0 || p.bit > 15) return `bit ${String(p.bit)} is not 0..15`;
  }
  return null;
}

export function pointKey(p: GpioPoint): string {
  return p.bit === undefined ? `${p.area}:${p.address}` : `${p.area}:${p.address}.${p.bit}`;
}

/**
 * The reads that cover a set of points: per area, addresses sorted and joined
 * into one request while the gap stays small and the request within the
 * protocol's limit.
 */
export function readRanges(points: GpioPoint[], maxGap = 16): Array<{ area: GpioArea; start: number; count: number }> {
  const out: Array<{ area: GpioArea; start: number; count: number }> = [];
  for (const area of GPIO_AREAS) {
    const limit = area === 'coil' || area === 'discrete' ? MAX_BITS_PER_READ : MAX_REGS_PER_READ;
    const addrs = [...new Set(points.filter((p) => p.area === area).map((p) => p.address))].sort((a, b) => a - b);
    let cur: { area: GpioArea; start: number; count: number } | null = null;
    for (const a of addrs) {
      if (cur && a - (cur.start + cur.count - 1) <= maxGap && a - cur.start < limit) cur.count = a - cur.start + 1;
      else {
        cur = { area, start: a, count: 1 };
        out.push(cur);
      }
    }
  }
  return out;
}
