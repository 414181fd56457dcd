; tiny: lockstep's multiboot test kernel (nasm -f bin), booted by v86 without a BIOS.
;
; It touches every source of non-determinism lockstep has to control and prints results that
; depend on them, so that any divergence between two runs shows up in its serial output:
;   - PIT channel 0 at 100 Hz (IRQ0) counts ticks; the PIT counter is read back with a latch;
;   - RDTSC; the CMOS real-time clock (ports 0x70/0x71);
;   - the UART (COM1, IRQ4) receives commands by interrupt; output is polled;
;   - the 8042 keyboard controller (IRQ1) reports every scancode as "kbd XX";
;   - IDE PIO reads and writes of the primary master (LBA28).
;
; Commands, one per line on COM1; every number is hexadecimal, in and out:
;   ping                 -> pong
;   ticks                -> ticks T          PIT interrupts since boot
;   tsc                  -> tsc HHHHHHHHLLLLLLLL delta D   (delta since the previous `tsc`)
;   pit                  -> pit C            PIT channel 0 current count
;   rtc                  -> rtc YYYY-MM-DD HH:MM:SS
;   keys                 -> keys K           keyboard scancodes received
;   read L               -> sector L hash H first F
;   write L B            -> wrote L hash H   (byte i of sector L becomes B+i)
;   memsum               -> memsum H         hash of the first 4 MiB of RAM
;   busy N               -> busy ticks T tsc D   (spins N*10000h iterations)
;   sleep N              -> slept ticks T    (halts until N PIT ticks passed)
;   help                 -> the list of commands
; Every answer ends with a new prompt "tiny> ". Errors start with "error: ".

bits 32
org 0x100000

MB_MAGIC    equ 0x1BADB002
MB_FLAGS    equ 0x00010000              ; the header carries load addresses (a.out kludge)

COM1        equ 0x3F8
RING_SIZE   equ 256                     ; power of two

header:
    dd MB_MAGIC
    dd MB_FLAGS
    dd -(MB_MAGIC + MB_FLAGS)
    dd header                           ; header_addr
    dd header                           ; load_addr
    dd load_end                         ; load_end_addr
    dd bss_end                          ; bss_end_addr
    dd start                            ; entry_addr

start:
    cli
    lgdt [gdt_desc]
    jmp 0x08:.reload
.reload:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov fs, ax
    mov gs, ax
    mov ss, ax
    mov esp, stack_top
    cld
    ; zero bss
    mov edi, bss_start
    mov ecx, bss_end - bss_start
    xor eax, eax
    rep stosb

    call idt_init
    call pic_init
    call pit_init
    call uart_init
    call kbd_init

    rdtsc
    mov [last_tsc], eax
    mov [last_tsc + 4], edx

    sti
    mov esi, msg_banner
    call puts
    call prompt

main_loop:
    cli
    mov eax, [kbd_head]
    cmp eax, [kbd_tail]
    jne .have_key
    mov eax, [rx_head]
    cmp eax, [rx_tail]
    jne .have_rx
    sti
    hlt                                 ; sti;hlt: no interrupt can slip in between
    jmp main_loop
.have_key:
    sti
    mov ebx, [kbd_tail]
    movzx eax, byte [kbd_ring + ebx]
    inc ebx
    and ebx, RING_SIZE - 1
    mov [kbd_tail], ebx
    push eax
    mov esi, msg_kbd
    call puts
    pop eax
    call put_hex8
    call newline
    jmp main_loop
.have_rx:
    sti
    mov ebx, [rx_tail]
    movzx eax, byte [rx_ring + ebx]
    inc ebx
    and ebx, RING_SIZE - 1
    mov [rx_tail], ebx
    call line_input
    jmp main_loop

; ---------------------------------------------------------------- line editing
; al = received byte: echo it, collect it, run the line on CR or LF
line_input:
    cmp al, 13
    je .eol
    cmp al, 10
    je .eol
    cmp al, 8
    je .backspace
    cmp al, 127
    je .backspace
    cmp al, 32
    jb .done                            ; other control bytes are ignored
    mov ecx, [line_len]
    cmp ecx, LINE_MAX - 1
    jae .done                           ; line full: drop the byte
    mov [line_buf + ecx], al
    inc dword [line_len]
    call putc
.done:
    ret
.backspace:
    cmp dword [line_len], 0
    je .done
    dec dword [line_len]
    mov esi, msg_bs
    jmp puts
.eol:
    call newline
    mov ecx, [line_len]
    mov byte [line_buf + ecx], 0
    mov dword [line_len], 0
    call run_command
    jmp prompt

; ---------------------------------------------------------------- commands
run_command:
    mov esi, line_buf
    call skip_spaces
    cmp byte [esi], 0
    je .empty
    mov ebx, command_table
.next:
    mov edi, [ebx]
    test edi, edi
    jz .unknown
    push esi
    call match_word                     ; esi advanced past the word on a match
    jnc .found
    pop esi
    add ebx, 8
    jmp .next
.found:
    add esp, 4
    call skip_spaces
    jmp [ebx + 4]
.unknown:
    mov esi, msg_unknown
    jmp puts
.empty:
    ret

cmd_help:
    mov esi, msg_help
    jmp puts

cmd_ping:
    mov esi, msg_pong
    call puts
    jmp newline

cmd_ticks:
    mov esi, msg_ticks
    call puts
    mov eax, [ticks]
    call put_hex32
    jmp newline

cmd_keys:
    mov esi, msg_keys
    call puts
    mov eax, [kbd_count]
    call put_hex32
    jmp newline

cmd_tsc:
    rdtsc
    mov ebx, eax
    mov ecx, edx
    mov esi, msg_tsc
    call puts
    mov eax, ecx
    call put_hex32
    mov eax, ebx
    call put_hex32
    mov esi, msg_delta
    call puts
    mov eax, ebx
    sub eax, [last_tsc]
    mov [last_tsc], ebx
    mov [last_tsc + 4], ecx
    call put_hex32
    jmp newline

cmd_pit:
    cli
    mov al, 0x00                        ; latch channel 0
    out 0x43, al
    in al, 0x40
    mov ah, al
    in al, 0x40
    sti
    xchg al, ah                         ; ax = count
    movzx ebx, ax
    mov esi, msg_pit
    call puts
    mov eax, ebx
    shr eax, 8
    call put_hex8
    mov eax, ebx
    call put_hex8
    jmp newline

cmd_rtc:
    mov esi, msg_rtc
    call puts
    mov al, 0x32                        ; century
    call cmos_read
    call put_hex8
    mov al, 0x09                        ; year
    call cmos_read
    call put_hex8
    mov al, '-'
    call putc
    mov al, 0x08                        ; month
    call cmos_read
    call put_hex8
    mov al, '-'
    call putc
    mov al, 0x07                        ; day of month
    call cmos_read
    call put_hex8
    mov al, ' '
    call putc
    mov al, 0x04                        ; hours
    call cmos_read
    call put_hex8
    mov al, ':'
    call putc
    mov al, 0x02                        ; minutes
    call cmos_read
    call put_hex8
    mov al, ':'
    call putc
    mov al, 0x00                        ; seconds
    call cmos_read
    call put_hex8
    jmp newline

cmd_read:
    call parse_hex
    jc bad_argument
    mov [arg_lba], eax
    call ide_read
    jc ide_error
    mov esi, msg_sector
    call puts
    mov eax, [arg_lba]
    call put_hex32
    mov esi, msg_hash
    call puts
    mov esi, sector_buf
    mov ecx, 512 / 4
    call hash_dwords
    call put_hex32
    mov esi, msg_first
    call puts
    mov eax, [sector_buf]
    call put_hex32
    jmp newline

cmd_write:
    call parse_hex
    jc bad_argument
    mov [arg_lba], eax
    call skip_spaces
    call parse_hex
    jc bad_argument
    mov ecx, 0                          ; sector_buf[i] = B + i
.fill:
    mov [sector_buf + ecx], al
    inc al
    inc ecx
    cmp ecx, 512
    jb .fill
    call ide_write
    jc ide_error
    mov esi, msg_wrote
    call puts
    mov eax, [arg_lba]
    call put_hex32
    mov esi, msg_hash
    call puts
    mov esi, sector_buf
    mov ecx, 512 / 4
    call hash_dwords
    call put_hex32
    jmp newline

cmd_memsum:
    mov esi, msg_memsum
    call puts
    xor esi, esi
    mov ecx, 0x400000 / 4
    call hash_dwords
    call put_hex32
    jmp newline

cmd_busy:
    call parse_hex
    jc bad_argument
    shl eax, 16
    mov ecx, eax
    mov ebx, [ticks]
    rdtsc
    mov edi, eax
.spin:
    dec ecx
    jnz .spin
    rdtsc
    sub eax, edi
    mov edi, eax
    mov esi, msg_busy
    call puts
    mov eax, [ticks]
    sub eax, ebx
    call put_hex32
    mov esi, msg_tsc_inline
    call puts
    mov eax, edi
    call put_hex32
    jmp newline

cmd_sleep:
    call parse_hex
    jc bad_argument
    mov ebx, [ticks]
    add eax, ebx
    mov edi, eax
.wait:
    mov eax, [ticks]
    sub eax, edi
    jns .woke                           ; ticks - deadline >= 0
    hlt
    jmp .wait
.woke:
    mov esi, msg_slept
    call puts
    mov eax, [ticks]
    sub eax, ebx
    call put_hex32
    jmp newline

bad_argument:
    mov esi, msg_bad_arg
    jmp puts

ide_error:
    mov esi, msg_ide_error
    call puts
    movzx eax, byte [ide_status]
    call put_hex8
    jmp newline

; ---------------------------------------------------------------- parsing
; esi -> first non-space byte
skip_spaces:
    cmp byte [esi], ' '
    jne .done
    inc esi
    jmp skip_spaces
.done:
    ret

; edi = NUL-terminated command name; esi = input. CF clear and esi past the word on a match.
match_word:
.loop:
    mov al, [edi]
    test al, al
    jz .end_of_name
    cmp al, [esi]
    jne .no
    inc esi
    inc edi
    jmp .loop
.end_of_name:
    mov al, [esi]
    test al, al
    jz .yes
    cmp al, ' '
    je .yes
.no:
    stc
    ret
.yes:
    clc
    ret

; esi -> hex digits; eax = value, esi past them; CF set if there is no digit or it overflows
parse_hex:
    xor edx, edx
    xor ecx, ecx                        ; digits seen
.loop:
    movzx eax, byte [esi]
    cmp al, '0'
    jb .end
    cmp al, '9'
    jbe .digit
    or al, 0x20
    cmp al, 'a'
    jb .end
    cmp al, 'f'
    ja .end
    sub al, 'a' - 10 - '0'
.digit:
    sub al, '0'
    cmp ecx, 8
    jae .bad
    shl edx, 4
    or edx, eax
    inc ecx
    inc esi
    jmp .loop
.end:
    test ecx, ecx
    jz .bad
    cmp byte [esi], 0
    je .ok
    cmp byte [esi], ' '
    jne .bad
.ok:
    mov eax, edx
    clc
    ret
.bad:
    stc
    ret

; esi = address, ecx = dword count -> eax = hash (rotate-xor-add, order sensitive)
hash_dwords:
    mov eax, 0x811C9DC5
.loop:
    rol eax, 5
    xor eax, [esi]
    add eax, 0x9E3779B9
    add esi, 4
    dec ecx
    jnz .loop
    ret

; ---------------------------------------------------------------- output
putc:                                   ; al
    push edx
    push eax
    mov dx, COM1 + 5
.wait:
    in al, dx
    test al, 0x20
    jz .wait
    pop eax
    mov dx, COM1
    out dx, al
    pop edx
    ret

puts:                                   ; esi = NUL-terminated
    push eax
.loop:
    lodsb
    test al, al
    jz .done
    call putc
    jmp .loop
.done:
    pop eax
    ret

newline:
    push esi
    mov esi, msg_crlf
    call puts
    pop esi
    ret

prompt:
    mov esi, msg_prompt
    jmp puts

put_hex32:                              ; eax
    push ecx
    push eax
    mov ecx, 8
.loop:
    rol eax, 4
    push eax
    and eax, 0xF
    mov al, [hex_digits + eax]
    call putc
    pop eax
    dec ecx
    jnz .loop
    pop eax
    pop ecx
    ret

put_hex8:                               ; al
    push eax
    push eax
    shr al, 4
    and eax, 0xF
    mov al, [hex_digits + eax]
    call putc
    pop eax
    and eax, 0xF
    mov al, [hex_digits + eax]
    call putc
    pop eax
    ret

; ---------------------------------------------------------------- devices
cmos_read:                              ; al = register -> al = value
    cli
    out 0x70, al
    in al, 0x71
    sti
    ret

pic_init:
    mov al, 0x11
    out 0x20, al
    out 0xA0, al
    mov al, 0x20                        ; IRQ0-7 -> vectors 20h-27h
    out 0x21, al
    mov al, 0x28                        ; IRQ8-15 -> vectors 28h-2Fh
    out 0xA1, al
    mov al, 4
    out 0x21, al
    mov al, 2
    out 0xA1, al
    mov al, 1
    out 0x21, al
    out 0xA1, al
    mov al, 0xEC                        ; unmask IRQ0 (PIT), IRQ1 (keyboard), IRQ4 (COM1)
    out 0x21, al
    mov al, 0xFF
    out 0xA1, al
    ret

pit_init:
    mov al, 0x34                        ; channel 0, lo/hi, mode 2 (rate generator)
    out 0x43, al
    mov ax, 11932                       ; 1193182 Hz / 100
    out 0x40, al
    mov al, ah
    out 0x40, al
    ret

uart_init:
    mov dx, COM1 + 1
    xor al, al
    out dx, al                          ; IER off while configuring
    mov dx, COM1 + 3
    mov al, 0x80
    out dx, al                          ; DLAB
    mov dx, COM1
    mov al, 1
    out dx, al                          ; divisor 1: 115200 baud
    mov dx, COM1 + 1
    xor al, al
    out dx, al
    mov dx, COM1 + 3
    mov al, 0x03
    out dx, al                          ; 8N1
    mov dx, COM1 + 4
    mov al, 0x0B
    out dx, al                          ; DTR, RTS, OUT2 (routes the interrupt to the PIC)
    mov dx, COM1 + 1
    mov al, 0x01
    out dx, al                          ; interrupt on received data
    ret

kbd_wait_write:
    in al, 0x64
    test al, 2
    jnz kbd_wait_write
    ret

kbd_init:
    call kbd_wait_write
    mov al, 0x60                        ; write the command byte
    out 0x64, al
    call kbd_wait_write
    mov al, 0x45                        ; keyboard interrupt, system flag, translation
    out 0x60, al
    call kbd_wait_write
    mov al, 0xF4                        ; keyboard: enable scanning
    out 0x60, al
    mov ecx, 100000
.ack:
    in al, 0x64
    test al, 1
    jnz .got
    dec ecx
    jnz .ack
    ret
.got:
    in al, 0x60                         ; eat the 0xFA ack
    ret

; IDE primary master, LBA28, one sector through sector_buf. CF set on error, status in ide_status.
ide_wait_ready:
    mov ecx, 1000000
.loop:
    mov dx, 0x1F7
    in al, dx
    mov [ide_status], al
    test al, 0x80                       ; BSY
    jz .ok
    dec ecx
    jnz .loop
    stc
    ret
.ok:
    clc
    ret

ide_setup:                              ; eax = lba, bl = command
    push eax
    call ide_wait_ready
    pop eax
    jc .out
    mov ecx, eax
    mov dx, 0x1F6
    shr eax, 24
    and al, 0x0F
    or al, 0xE0
    out dx, al
    mov dx, 0x1F2
    mov al, 1
    out dx, al
    mov dx, 0x1F3
    mov al, cl
    out dx, al
    mov dx, 0x1F4
    mov al, ch
    out dx, al
    mov dx, 0x1F5
    mov eax, ecx
    shr eax, 16
    out dx, al
    mov dx, 0x1F7
    mov al, bl
    out dx, al
    call ide_wait_ready
    jc .out
    test al, 0x01                       ; ERR
    jnz .fail
    test al, 0x08                       ; DRQ
    jz .fail
    clc
.out:
    ret
.fail:
    stc
    ret

ide_read:
    mov eax, [arg_lba]
    mov bl, 0x20                        ; READ SECTORS
    call ide_setup
    jc .out
    mov edi, sector_buf
    mov ecx, 256
    mov dx, 0x1F0
    rep insw
    clc
.out:
    ret

ide_write:
    mov eax, [arg_lba]
    mov bl, 0x30                        ; WRITE SECTORS
    call ide_setup
    jc .out
    mov esi, sector_buf
    mov ecx, 256
    mov dx, 0x1F0
    rep outsw
    call ide_wait_ready
    jc .out
    test al, 0x01
    jnz .fail
    mov eax, [arg_lba]                  ; FLUSH CACHE, so the write is on the backing store
    mov dx, 0x1F7
    mov al, 0xE7
    out dx, al
    call ide_wait_ready
.out:
    ret
.fail:
    stc
    ret

; ---------------------------------------------------------------- interrupts
idt_init:
    mov edi, idt
    mov ecx, 256
    mov eax, isr_unexpected
.fill:
    call idt_set
    add edi, 8
    dec ecx
    jnz .fill
    mov edi, idt + 0x20 * 8
    mov eax, isr_timer
    call idt_set
    mov edi, idt + 0x21 * 8
    mov eax, isr_keyboard
    call idt_set
    mov edi, idt + 0x24 * 8
    mov eax, isr_serial
    call idt_set
    mov edi, idt + 0x27 * 8             ; spurious IRQ7
    mov eax, isr_spurious
    call idt_set
    lidt [idt_desc]
    ret

idt_set:                                ; edi = entry, eax = handler
    mov [edi], ax
    mov word [edi + 2], 0x08
    mov word [edi + 4], 0x8E00          ; present, ring 0, 32-bit interrupt gate
    push eax
    shr eax, 16
    mov [edi + 6], ax
    pop eax
    ret

isr_timer:
    push eax
    inc dword [ticks]
    mov al, 0x20
    out 0x20, al
    pop eax
    iret

isr_keyboard:
    push eax
    push ebx
    in al, 0x60
    inc dword [kbd_count]
    mov ebx, [kbd_head]
    mov [kbd_ring + ebx], al
    inc ebx
    and ebx, RING_SIZE - 1
    cmp ebx, [kbd_tail]
    je .full                            ; ring full: drop the scancode
    mov [kbd_head], ebx
.full:
    mov al, 0x20
    out 0x20, al
    pop ebx
    pop eax
    iret

isr_serial:
    push eax
    push ebx
    push edx
.more:
    mov dx, COM1 + 5
    in al, dx
    test al, 1                          ; data ready
    jz .done
    mov dx, COM1
    in al, dx
    mov ebx, [rx_head]
    mov [rx_ring + ebx], al
    inc ebx
    and ebx, RING_SIZE - 1
    cmp ebx, [rx_tail]
    je .more                            ; ring full: drop the byte
    mov [rx_head], ebx
    jmp .more
.done:
    mov al, 0x20
    out 0x20, al
    pop edx
    pop ebx
    pop eax
    iret

isr_spurious:
    iret

isr_unexpected:
    cli
    mov esi, msg_unexpected
    call puts
.halt:
    hlt
    jmp .halt

; ---------------------------------------------------------------- data
align 8
gdt:
    dq 0
    dq 0x00CF9A000000FFFF               ; 08h: code, flat 4 GiB
    dq 0x00CF92000000FFFF               ; 10h: data, flat 4 GiB
gdt_desc:
    dw gdt_desc - gdt - 1
    dd gdt
idt_desc:
    dw 256 * 8 - 1
    dd idt

command_table:
    dd name_ping, cmd_ping
    dd name_ticks, cmd_ticks
    dd name_tsc, cmd_tsc
    dd name_pit, cmd_pit
    dd name_rtc, cmd_rtc
    dd name_keys, cmd_keys
    dd name_read, cmd_read
    dd name_write, cmd_write
    dd name_memsum, cmd_memsum
    dd name_busy, cmd_busy
    dd name_sleep, cmd_sleep
    dd name_help, cmd_help
    dd 0, 0

name_ping:   db "ping", 0
name_ticks:  db "ticks", 0
name_tsc:    db "tsc", 0
name_pit:    db "pit", 0
name_rtc:    db "rtc", 0
name_keys:   db "keys", 0
name_read:   db "read", 0
name_write:  db "write", 0
name_memsum: db "memsum", 0
name_busy:   db "busy", 0
name_sleep:  db "sleep", 0
name_help:   db "help", 0

hex_digits:  db "0123456789ABCDEF"
msg_banner:  db "tiny: lockstep test kernel ready", 13, 10, 0
msg_prompt:  db "tiny> ", 0
msg_crlf:    db 13, 10, 0
msg_bs:      db 8, " ", 8, 0
msg_pong:    db "pong", 0
msg_ticks:   db "ticks ", 0
msg_keys:    db "keys ", 0
msg_kbd:     db "kbd ", 0
msg_tsc:     db "tsc ", 0
msg_delta:   db " delta ", 0
msg_pit:     db "pit ", 0
msg_rtc:     db "rtc ", 0
msg_sector:  db "sector ", 0
msg_hash:    db " hash ", 0
msg_first:   db " first ", 0
msg_wrote:   db "wrote ", 0
msg_memsum:  db "memsum ", 0
msg_busy:    db "busy ticks ", 0
msg_tsc_inline: db " tsc ", 0
msg_slept:   db "slept ticks ", 0
msg_unknown: db "error: unknown command (try help)", 13, 10, 0
msg_bad_arg: db "error: bad argument (numbers are hexadecimal)", 13, 10, 0
msg_ide_error: db "error: ide status ", 0
msg_unexpected: db 13, 10, "tiny: unexpected interrupt or exception, halted", 13, 10, 0
msg_help:
    db "commands (numbers in hex): ping ticks tsc pit rtc keys read L write L B memsum busy N sleep N help", 13, 10, 0

LINE_MAX equ 128

load_end:

section .bss
bss_start:
alignb 16
idt:        resb 256 * 8
ticks:      resd 1
kbd_count:  resd 1
kbd_head:   resd 1
kbd_tail:   resd 1
rx_head:    resd 1
rx_tail:    resd 1
line_len:   resd 1
arg_lba:    resd 1
last_tsc:   resd 2
ide_status: resb 1
alignb 16
kbd_ring:   resb RING_SIZE
rx_ring:    resb RING_SIZE
line_buf:   resb LINE_MAX
sector_buf: resb 512
stack:      resb 16384
stack_top:
bss_end:
