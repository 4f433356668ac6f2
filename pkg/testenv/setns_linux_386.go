package testenv

// sysSetns is setns(2) on linux/386, which package syscall's frozen table
// lacks.
const sysSetns = 346
