/* Prints argv, one argument per line, for comparing #! parsing with the kernel's. */
#include <stdio.h>

int main(int argc, char **argv) {
    for (int i = 0; i < argc; i++) printf("%s\n", argv[i]);
    return 0;
}
