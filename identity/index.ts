/** What serve/ and the other services import from identity/. */
export { identityPlugin, swiftAuthPlugin, authBodyBytesMax, type IdentityPluginOptions } from "./plugin.ts";
export { IdentityService, defaultDomain, type IdentityServiceOptions, type Session } from "./service.ts";
export { requireToken, authenticate, type Caller } from "./require-token.ts";
export { IdentityError, identityErrors, keystoneErrorBody, type IdentityErrorCode } from "./errors.ts";
export { hashPassword, verifyPassword, passwordLengthMax, scryptCostLog2Default } from "./password.ts";
export { LoginThrottle, loginFailuresMaxDefault, loginFailureWindowMsDefault } from "./throttle.ts";
export { catalogServices, regionDefault } from "./catalog.ts";
export { quotaRoutes, accountBodyBytesMax, type QuotaRoutesOptions } from "./quotas.ts";
export { astakosFaultBody, astakosFaults, toAstakosFault, type AstakosFault } from "./astakos-errors.ts";
export { localTokenValidator, RemoteTokenValidator, type RemoteTokenValidatorOptions, type TokenValidator, type ValidatedToken } from "./token-validator.ts";
