/* A 1 MiB zero array in .bss right after an initialized variable in .data:
 * the page holding the end of .data is also the start of .bss, so the loader
 * must zero that page after p_filesz. */
int marker = 0x12345678;
char big[1 << 20];

int main(void) { return big[12345] + (marker != 0x12345678); }
