/**
 * What a block-storage volume has been charged (charges.ts): every commission the volume
 * service issues for a volume has the client key `volume:<volume id>:<step>`
 * (gateways/volumes/quota.ts).
 */
import type { MetadataDatabase } from "../connect.ts";
import { getChargesByKeyPrefix, type Charges } from "./charges.ts";
import { checkUuid } from "./limits.ts";

export type VolumeCharges = Charges;

/** The client-key prefix of a volume's commissions. */
export function volumeCommissionPrefix(volumeId: string): string {
  return `volume:${checkUuid("volumeId", volumeId)}:`;
}

export function getVolumeCharges(db: MetadataDatabase, volumeId: string): Promise<VolumeCharges> {
  return getChargesByKeyPrefix(db, volumeCommissionPrefix(volumeId));
}
