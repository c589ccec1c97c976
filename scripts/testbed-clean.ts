// Removes what killed testbed runs left behind (network namespaces, cgroups, bpffs
// pins named amb<pid>x<rand>-...), only for runs whose creating process is gone.
import { cleanupStale } from '../testbed/testbed.js'

const removed = cleanupStale()
if (removed.length > 0) console.log(`testbed-clean: removed ${removed.join(' ')}`)
