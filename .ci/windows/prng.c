/* A stand-in for bcryptprimitives.dll, used only under Wine in CI.
 *
 * Rust's std (1.78 on) gets random bytes on Windows from ProcessPrng in
 * bcryptprimitives.dll, which every Windows 10 and later has, but which
 * Wine added only in 8.13: Debian 12's Wine 8.0 cannot load a Rust exe
 * without it. This DLL, put next to wbuild.exe by .ci/windows/build.sh and
 * preferred over Wine's own by WINEDLLOVERRIDES in .ci/windows/test.sh,
 * answers with RtlGenRandom (advapi32's SystemFunction036), which Wine has.
 * Delete it when CI's Wine is 8.13 or newer. Never ship it: real Windows
 * has the real one. */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    while (len > 0) {
        ULONG chunk = len > 0x40000000 ? 0x40000000 : (ULONG)len;
        if (!SystemFunction036(data, chunk))
            return FALSE;
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
